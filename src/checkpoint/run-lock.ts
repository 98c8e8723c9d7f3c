// The run directory's lock: one trainer per run directory. `weft.lock` names its owner: pid,
// host, pid namespace and boot (a container or a reboot can reuse a pid), and the process's start
// time. It is created whole (written under a private name, then hard-linked into place, which
// fails if a lock exists; where the filesystem has no hard links, created exclusively and then
// written), so a reader never mistakes half a lock for a stale one.
//
// A lock whose owner is gone is taken over with a message: same host and boot, and the pid not
// running or running but started at another time (a reused pid); a lock from before a reboot.
// A live owner is refused, named; so is an owner this process cannot see (another host, or
// another container on this host): delete the file once you know that trainer has ended. A lock is
// held once: a second job in the same process is refused like any other trainer, and whoever
// holds the lock passes its handle on (the CLI opens the run, then the coordinator trains it).

import {
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { WeftError } from '../util/errors.ts';

export const LOCK_FILE = 'weft.lock';

/** A lock file younger than this with unreadable contents is one being written, not garbage. */
const WRITING_GRACE_MS = 10_000;

interface LockOwner {
  pid: number;
  host: string;
  /** The process's start time in clock ticks after boot (/proc/PID/stat), where known. */
  started: number | null;
  /** Its pid namespace (/proc/self/ns/pid): pids of another namespace are not ours to check. */
  pidns: string | null;
  /** The kernel's boot id: a lock from an earlier boot is stale whatever its pid. */
  boot: string | null;
}

export interface RunLock {
  /** The lock file. */
  readonly path: string;
  /** Lets go of the lock (idempotent). */
  release(): void;
}

/** Lock files this process holds, with their contents, removed if the process exits holding them. */
const held = new Map<string, string>();
process.on('exit', () => {
  for (const [path, text] of held) removeIfOurs(path, text);
});

const readOr = <T>(read: () => T, fallback: T): T => {
  try {
    return read();
  } catch {
    return fallback;
  }
};

/** Does `act`, ignoring a failure (a file already gone, a link that lost a race). */
const quietly = (act: () => void): void => readOr(act, undefined);

/** Start time of process `pid` in clock ticks after boot, or null where /proc is not there. */
function processStart(pid: number): number | null {
  return readOr(() => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the fields after the parenthesised command name; starttime is field 22 (index 19 there)
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  }, null);
}

function me(): LockOwner {
  return {
    pid: process.pid,
    host: hostname(),
    started: processStart(process.pid),
    pidns: readOr(() => readlinkSync('/proc/self/ns/pid'), null),
    boot: readOr(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(), null),
  };
}

const differ = (a: string | number | null, b: string | number | null) =>
  a !== null && b !== null && a !== b;

/** Whether `owner` (of this host, boot and pid namespace) is a running process. */
function isRunning(owner: LockOwner, self: LockOwner): boolean {
  if (owner.pid !== self.pid) {
    try {
      process.kill(owner.pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
    }
  }
  return !differ(owner.started, processStart(owner.pid));
}

function readOwner(path: string): LockOwner | null {
  const owner = readOr(() => JSON.parse(readFileSync(path, 'utf8')) as Partial<LockOwner>, null);
  if (!owner || !Number.isSafeInteger(owner.pid) || typeof owner.host !== 'string') return null;
  return {
    pid: owner.pid as number,
    host: owner.host,
    started: owner.started ?? null,
    pidns: owner.pidns ?? null,
    boot: owner.boot ?? null,
  };
}

function removeIfOurs(path: string, text: string): void {
  if (readOr(() => readFileSync(path, 'utf8'), null) === text) quietly(() => unlinkSync(path));
}

/** Creates `path` holding `text` only if it does not exist; false if it does. */
function createWhole(path: string, text: string): boolean {
  const tmp = `${path}.${process.pid}`;
  writeFileSync(tmp, text);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP')
      throw err;
    return createExclusive(path, text); // no hard links here (exFAT, FUSE mounts, SMB)
  } finally {
    unlinkSync(tmp);
  }
}

function createExclusive(path: string, text: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  return true;
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
    quietly(() => linkSync(aside, path));
    unlinkSync(aside);
    return false;
  }
  unlinkSync(aside);
  return true;
}

/** What to do about an existing lock: 'stale' (take it over) or an error saying who holds it. */
function judge(
  path: string,
  dir: string,
  owner: LockOwner | null,
  self: LockOwner,
): 'stale' | WeftError {
  const inUse = (by: string, what: string) =>
    new WeftError('WEFT_E_STATE', `run directory ${dir} is in use by ${by} (${path}); ${what}`);
  if (!owner) {
    const age = readOr(() => Date.now() - statSync(path).mtimeMs, Infinity);
    return age < WRITING_GRACE_MS
      ? inUse('a trainer that is starting', 'wait for it to end or stop it')
      : new WeftError(
          'WEFT_E_STATE',
          `run directory ${dir}: ${path} is not a weft lock; delete it if no trainer is using ${dir}`,
        );
  }
  const gone = `stop that trainer first, or delete ${path} once you know it has ended`;
  if (owner.host !== self.host) return inUse(`pid ${owner.pid} on host ${owner.host}`, gone);
  if (differ(owner.boot, self.boot)) return 'stale'; // this host has rebooted since
  if (differ(owner.pidns, self.pidns))
    return inUse(`pid ${owner.pid} in another container on this host (${owner.pidns})`, gone);
  if (!isRunning(owner, self)) return 'stale';
  return owner.pid === self.pid
    ? inUse('another job in this process', 'pass the lock you hold on instead of locking again')
    : inUse(
        `pid ${owner.pid} on this host`,
        'wait for that trainer to end or stop it (Ctrl-C saves a checkpoint)',
      );
}

/** Locks run directory `dir` (created if missing) for this process; throws if another trainer holds it. */
export function lockRunDir(dir: string, log: (line: string) => void = () => {}): RunLock {
  const path = join(dir, LOCK_FILE);
  const self = me();
  const text = `${JSON.stringify(self)}\n`;
  try {
    mkdirSync(dir, { recursive: true });
    for (let attempt = 0; !createWhole(path, text); attempt++) {
      const owner = readOwner(path);
      if (!owner && !existsSync(path)) continue;
      const verdict = judge(path, dir, owner, self);
      if (verdict !== 'stale') throw verdict;
      if (attempt >= 3 || !takeOver(path, owner as LockOwner)) {
        // another trainer took it over first: name that one
        const winner = judge(path, dir, readOwner(path), self);
        throw winner !== 'stale'
          ? winner
          : new WeftError(
              'WEFT_E_STATE',
              `run directory ${dir} is being taken over by another trainer (${path}); try again`,
            );
      }
      log(`took over ${path} from pid ${(owner as LockOwner).pid}, which is no longer running`);
    }
  } catch (err) {
    if (err instanceof WeftError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new WeftError(
      'WEFT_E_STATE',
      `cannot lock run directory ${dir}: ${e.code ?? e.message} (${e.message})`,
    );
  }
  held.set(path, text);
  let released = false;
  return {
    path,
    release: () => {
      if (released) return;
      released = true;
      held.delete(path);
      removeIfOurs(path, text);
    },
  };
}
