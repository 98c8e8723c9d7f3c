// The run directory's lock (issue 12, case 3) as a library gives it: a program that trains
// through the library is refused a directory another trainer holds, exactly as the CLI is.

import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LOCK_FILE, lockRunDir } from '../../src/checkpoint/run-lock.ts';
import { loadDataset } from '../../src/data/dataset.ts';
import { trainInProcess } from '../../src/dist/launch.ts';
import { tinyConfig, tinyDataset } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();

/** A live process of this host and its start time (field 22 of /proc/PID/stat). */
const sleeper = spawn('sleep', ['60']);
afterAll(() => void sleeper.kill());
const startOf = (pid: number) => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
};
const lockAs = (run: string, owner: object) =>
  writeFileSync(join(run, LOCK_FILE), JSON.stringify(owner));

describe('lockRunDir', () => {
  it('is re-entrant within a process and removed when the last hold is released', () => {
    const run = join(dir, 'reentrant');
    const outer = lockRunDir(run);
    const inner = lockRunDir(run);
    expect(JSON.parse(readFileSync(outer.path, 'utf8'))).toMatchObject({
      pid: process.pid,
      host: hostname(),
    });
    inner.release();
    expect(existsSync(outer.path)).toBe(true);
    outer.release();
    outer.release(); // twice is harmless
    expect(existsSync(outer.path)).toBe(false);
  });

  it("refuses a live process's lock, and takes over one whose pid now belongs to another process", () => {
    const run = join(dir, 'live');
    lockRunDir(run).release();
    const pid = sleeper.pid as number;
    lockAs(run, { pid, host: hostname(), started: startOf(pid) });
    expect(() => lockRunDir(run)).toThrow(`is in use by pid ${pid} on this host`);
    lockAs(run, { pid, host: hostname(), started: startOf(pid) - 1 }); // the pid was reused
    const log: string[] = [];
    lockRunDir(run, (line) => log.push(line)).release();
    expect(log).toEqual([expect.stringMatching(`from pid ${pid}, which is no longer running`)]);
  });

  it('refuses a file that is not a weft lock, naming it', () => {
    const run = join(dir, 'garbage');
    lockRunDir(run).release();
    writeFileSync(join(run, LOCK_FILE), 'not json');
    expect(() => lockRunDir(run)).toThrow(/weft\.lock is not a weft lock; delete it if no trainer/);
  });

  it('a library trainer on a directory another process holds is refused before it writes', () => {
    const dataset = loadDataset(tinyDataset(dir));
    const run = join(dir, 'held');
    lockRunDir(run).release();
    const pid = sleeper.pid as number;
    lockAs(run, { pid, host: hostname(), started: startOf(pid) });
    expect(() => trainInProcess(tinyConfig({ steps: 2 }), dataset, run, { workers: 1 })).toThrow(
      `in use by pid ${pid}`,
    );
    expect(existsSync(join(run, 'config.json'))).toBe(false);
  });
});
