// The run directory's lock: one trainer per run directory. `weft.lock` holds the owner's pid,
// host and process start time; it is created whole (written under a private name, then
// hard-linked into place, which fails if a lock exists) so no reader ever sees half of one.
// A lock left by a process that is gone (same host, pid not running, or running but started at
// another time: a reused pid) is taken over with a message; a live owner, or one on another
// host (whose processes this host cannot see), is refused with a one-line error naming it.
// Within one process the lock is re-entrant (the CLI takes it before preparing data, the
// coordinator again when it starts), and it is released when the last holder lets go or the
// process exits.

import {
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../util/errors.ts';

export const LOCK_FILE = 'weft.lock';

interface LockOwner {
  pid: number;
  host: string;
  /** The process's start time in clock ticks after boot (/proc/PID/stat), where known. */
  started: number | null;
}

export interface RunLock {
  /** The lock file. */
  readonly path: string;
  /** Lets go of this hold; the file goes when the process's last hold does. */
  release(): void;
}

/** Locks held by this process: real path of the run directory -> holds. */
const held = new Map<string, { path: string; holds: number; text: string }>();
process.on('exit', () => {
  for (const lock of held.values()) removeIfOurs(lock.path, lock.text);
});

/** Start time of process `pid` in clock ticks after boot, or null where /proc is not there. */
function processStart(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // fields after the parenthesised command name; starttime is field 22 (index 19 after it)
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

function isRunning(owner: LockOwner): boolean {
  if (owner.pid === process.pid) return false; // not one of our holds (checked first): a previous life of this pid
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = processStart(owner.pid);
  return owner.started === null || started === null || started === owner.started;
}

function readOwner(path: string): LockOwner | null {
  try {
    const owner = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>;
    if (Number.isSafeInteger(owner.pid) && typeof owner.host === 'string') {
      return { pid: owner.pid as number, host: owner.host, started: owner.started ?? null };
    }
  } catch {
    // unreadable or not JSON: reported below
  }
  return null;
}

function removeIfOurs(path: string, text: string): void {
  try {
    if (readFileSync(path, 'utf8') === text) unlinkSync(path);
  } catch {
    // already gone
  }
}

/** Creates `path` holding `text`, atomically and only if it does not exist; false if it does. */
function createWhole(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}`;
  writeFileSync(tmp, text);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/** Moves a stale lock out of the way, unless another process replaced it meanwhile. */
function takeOver(path: string, stale: LockOwner): boolean {
  const aside = `${path}.stale-${process.pid}`;
  try {
    renameSync(path, aside);
  } catch {
    return true; // gone already: try to create it again
  }
  const moved = readOwner(aside);
  if (moved?.pid !== stale.pid || moved.host !== stale.host) {
    // a new owner's lock was moved: put it back (link fails only if yet another one exists)
    try {
      linkSync(aside, path);
    } catch {
      // a third process holds it now; ours fails below either way
    }
    unlinkSync(aside);
    return false;
  }
  unlinkSync(aside);
  return true;
}

/** Locks run directory `dir` (created if missing) for this process; throws if another trainer holds it. */
export function lockRunDir(dir: string, log: (line: string) => void = () => {}): RunLock {
  mkdirSync(dir, { recursive: true });
  const key = realpathSync(dir);
  const path = join(dir, LOCK_FILE);
  let lock = held.get(key);
  if (!lock) {
    const me: LockOwner = {
      pid: process.pid,
      host: hostname(),
      started: processStart(process.pid),
    };
    const text = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; !createWhole(path, text); attempt++) {
      const owner = readOwner(path);
      const inUse = `run directory ${dir} is in use`;
      if (!owner) {
        if (!existsSync(path)) continue;
        throw new WeftError(
          'WEFT_E_STATE',
          `${inUse}: ${path} is not a weft lock; delete it if no trainer is using ${dir}`,
        );
      }
      if (owner.host !== me.host) {
        throw new WeftError(
          'WEFT_E_STATE',
          `${inUse} by pid ${owner.pid} on host ${owner.host} (${path}); stop that trainer first, or delete ${path} if it is gone`,
        );
      }
      if (isRunning(owner) || attempt >= 3 || !takeOver(path, owner)) {
        throw new WeftError(
          'WEFT_E_STATE',
          `${inUse} by pid ${owner.pid} on this host (${path}); wait for that trainer to end or stop it (Ctrl-C saves a checkpoint)`,
        );
      }
      log(`took over ${path} from pid ${owner.pid}, which is no longer running`);
    }
    lock = { path, holds: 0, text };
    held.set(key, lock);
  }
  lock.holds++;
  const hold = lock;
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      if (--hold.holds > 0) return;
      held.delete(key);
      removeIfOurs(hold.path, hold.text);
    },
  };
}
