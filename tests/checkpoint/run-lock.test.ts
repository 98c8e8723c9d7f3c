// The run directory's lock (issue 12, case 3) as a library gives it: a program that trains
// through the library is refused a directory another trainer holds, exactly as the CLI is, and a
// second job in the same process is refused too.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockRunDir } from '../../src/checkpoint/run-lock.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { trainInProcess } from '../../src/distributed/launch.ts';
import { openFreshRun } from '../../src/train/run-dir.ts';
import { tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const dataset = loadDataset(tinyDataset(dir));

/** A live process of this host and its start time (field 22 of /proc/PID/stat). */
const sleeper = spawn('sleep', ['60']);
afterAll(() => void sleeper.kill());
const sleeperPid = sleeper.pid as number;
const startOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
};
/** The sleeper as the owner of a lock, with `changes`. */
const sleeperLock = (run: string, changes: object = {}) => {
  mkdirSync(run, { recursive: true });
  const owner = { pid: sleeperPid, host: hostname(), started: startOf(sleeperPid), ...changes };
  writeFileSync(join(run, LOCK_FILE), JSON.stringify(owner));
};

describe('lockRunDir', () => {
  it('is held once: a second job in this process is refused; release removes it', () => {
    const run = join(dir, 'once');
    const lock = lockRunDir(run);
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({
      pid: process.pid,
      host: hostname(),
    });
    expect(() => lockRunDir(run)).toThrow(/in use by another job in this process/);
    lock.release();
    lock.release(); // twice is harmless
    expect(existsSync(lock.path)).toBe(false);
    lockRunDir(run).release();
  });

  it("refuses a live process's lock, and takes over one whose pid now belongs to another process", () => {
    const run = join(dir, 'live');
    sleeperLock(run);
    expect(() => lockRunDir(run)).toThrow(`is in use by pid ${sleeperPid} on this host`);
    sleeperLock(run, { started: startOf(sleeperPid) - 1 }); // the pid was reused
    const log: string[] = [];
    lockRunDir(run, (line) => log.push(line)).release();
    expect(log).toEqual([
      expect.stringMatching(`from pid ${sleeperPid}, which is no longer running`),
    ]);
  });

  it('refuses a lock from another container on this host, and takes over one from before a reboot', () => {
    const run = join(dir, 'namespaces');
    sleeperLock(run, { pidns: 'pid:[1]' });
    expect(() => lockRunDir(run)).toThrow(/in use by pid \d+ in another container on this host/);
    sleeperLock(run, { boot: 'an-earlier-boot' });
    const log: string[] = [];
    lockRunDir(run, (line) => log.push(line)).release();
    expect(log).toEqual([expect.stringMatching('which is no longer running')]);
  });

  it('refuses a file that is not a weft lock, naming it (a fresh one is a lock being written)', () => {
    const run = join(dir, 'garbage');
    lockRunDir(run).release();
    const path = join(run, LOCK_FILE);
    writeFileSync(path, 'not json');
    expect(() => lockRunDir(run)).toThrow(/in use by a trainer that is starting/);
    utimesSync(path, new Date(0), new Date(0));
    expect(() => lockRunDir(run)).toThrow(/weft\.lock is not a weft lock; delete it if no trainer/);
  });

  it('names a run directory that cannot be made, in one line', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    expect(() => lockRunDir(join(file, 'run'))).toThrow(
      /^cannot lock run directory .*a-file\/run: ENOTDIR/,
    );
  });
});

describe('library trainers', () => {
  it('one on a directory another process holds is refused before it writes', () => {
    const run = join(dir, 'held');
    sleeperLock(run);
    expect(() => trainInProcess(tinyConfig({ steps: 2 }), dataset, run, { workers: 1 })).toThrow(
      `in use by pid ${sleeperPid}`,
    );
    expect(existsSync(join(run, 'config.json'))).toBe(false);
  });

  it('two in one process on one directory: the second is refused', async () => {
    const run = join(dir, 'twice');
    const first = trainInProcess(tinyConfig({ steps: 3 }), dataset, run, { workers: 1 });
    expect(() => trainInProcess(tinyConfig({ steps: 3 }), dataset, run, { workers: 1 })).toThrow(
      /in use by another job in this process/,
    );
    await first.result;
    expect(existsSync(join(run, LOCK_FILE))).toBe(false);
  });

  it('a run opened by the policy passes its lock to the launcher, which leaves it to the opener', async () => {
    const opened = openFreshRun({
      config: tinyConfig({ steps: 2, tokenizer: 'bpe:300' }),
      data: dataset.dir,
      outDir: join(dir, 'handed'),
    });
    const { config, outDir, lock } = opened;
    await trainInProcess(config, opened.dataset, outDir, { workers: 1, lock }).result;
    expect(existsSync(lock.path)).toBe(true);
    lock.release();
    expect(existsSync(lock.path)).toBe(false);
  });
});
