// Atomic checkpoint publishing. A checkpoint is written into checkpoints/.tmp-step-N-<pid>/,
// every file fsynced, the directory fsynced, then renamed to step-N; only then is `latest`
// replaced the same way (write latest.tmp, fsync, rename). A crash at any point leaves the
// previous checkpoint intact and `latest` naming a complete one; cleanCheckpointTemps tidies up
// on the next start. A directory already holding the step is verified, never trusted, and
// pruning deletes nothing until the newest checkpoint verifies when read back. Writing is
// asynchronous (libuv's thread pool), so the event loop coordinating training never waits on disk.
//
// Fault injection for crash tests: WEFT_FAULT=<point>[@<n>] SIGKILLs the process the n-th time
// (default first) it reaches <point>: checkpoint:begin, checkpoint:file, checkpoint:before-rename,
// checkpoint:replace (an existing step-N moved aside, the new one not yet renamed in),
// checkpoint:after-rename, checkpoint:latest-tmp, checkpoint:done.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { GPTConfig } from '../model/config.ts';
import type { CheckpointManifest, CheckpointState } from './format.ts';
import {
  CHECKPOINTS_DIR,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  LATEST_FILE,
  MANIFEST_FILE,
  MODEL_FILE,
  OPTIMIZER_FILE,
  STEP_DIR_PATTERN,
  stepDirName,
} from './format.ts';
import { checkpointProblem } from './read.ts';
import { safetensorsParts } from './safetensors.ts';
import { weightTensors } from './weights.ts';

const faultCounts = new Map<string, number>();

/** Kills the process here when WEFT_FAULT names this point (tests of crash safety). */
export function faultPoint(name: string): void {
  const spec = process.env.WEFT_FAULT;
  if (!spec) return;
  const [point, nth] = spec.split('@');
  if (point !== name) return;
  const count = (faultCounts.get(name) ?? 0) + 1;
  faultCounts.set(name, count);
  if (count === Number(nth ?? 1)) process.kill(process.pid, 'SIGKILL');
}

async function writeSynced(path: string, data: string): Promise<void> {
  await writePartsSynced(path, [Buffer.from(data)]);
}

/** Writes `parts` one after another (no concatenated copy), fsyncs; returns size and sha256. */
async function writePartsSynced(
  path: string,
  parts: Uint8Array[],
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const handle = await open(path, 'w');
  try {
    for (const part of parts) {
      hash.update(part);
      for (let at = 0; at < part.length;) at += (await handle.write(part, at)).bytesWritten;
      bytes += part.length;
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function syncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The two safetensors files of a state, as parts: weights, and AdamW's m and v under m/ and v/. */
function checkpointFiles(state: CheckpointState): { model: Uint8Array[]; optimizer: Uint8Array[] } {
  const config = state.config as GPTConfig;
  const moments = [
    ...weightTensors(state.m, config, 'm/'),
    ...weightTensors(state.v, config, 'v/'),
  ];
  return {
    model: safetensorsParts(weightTensors(state.params, config), { format: 'pt' }),
    optimizer: safetensorsParts(moments, { format: 'weft-adamw', steps: String(state.adamSteps) }),
  };
}

/** Receives what a save did besides writing (a directory moved aside, one kept as it was). */
export type SaveLog = (line: string) => void;

/**
 * Writes `state` as checkpoints/step-N of `runDir`, publishes it as latest, keeps the newest
 * `keepLast` (0: all). A step-N directory that exists already (a crashed or resumed attempt saved
 * this step before) is never trusted: it stays only when it verifies and its manifest equals the
 * new one byte for byte; otherwise it is moved aside (step-N.damaged, step-N.replaced) and named
 * in `log`.
 */
export async function writeCheckpoint(
  runDir: string,
  state: CheckpointState,
  keepLast = 0,
  log: SaveLog = () => {},
): Promise<string> {
  const dir = join(runDir, CHECKPOINTS_DIR);
  await mkdir(dir, { recursive: true });
  const name = stepDirName(state.step);
  const tmp = join(dir, `.tmp-${name}-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp);
  faultPoint('checkpoint:begin');

  const { model, optimizer } = checkpointFiles(state);
  const modelFile = await writePartsSynced(join(tmp, MODEL_FILE), model);
  faultPoint('checkpoint:file');
  const optimizerFile = await writePartsSynced(join(tmp, OPTIMIZER_FILE), optimizer);
  const { params: _p, m: _m, v: _v, ...meta } = state;
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    ...meta,
    files: { [MODEL_FILE]: modelFile, [OPTIMIZER_FILE]: optimizerFile },
  };
  const manifestText = `${JSON.stringify(manifest, null, 2)}\n`;
  await writeSynced(join(tmp, MANIFEST_FILE), manifestText);
  await syncDir(tmp);
  faultPoint('checkpoint:before-rename');

  await install(dir, tmp, name, manifestText, log);
  await syncDir(dir);
  faultPoint('checkpoint:after-rename');

  await publishLatest(dir, name);
  faultPoint('checkpoint:done');

  if (keepLast > 0) await pruneCheckpoints(dir, keepLast, name, log);
  return join(dir, name);
}

/** Renames the finished temporary directory `tmp` to `name`, deciding what happens to one already there. */
async function install(
  dir: string,
  tmp: string,
  name: string,
  manifestText: string,
  log: SaveLog,
): Promise<void> {
  const final = join(dir, name);
  if (existsSync(final)) {
    const problem = checkpointProblem(final);
    if (problem === null && readFileSync(join(final, MANIFEST_FILE), 'utf8') === manifestText) {
      await rm(tmp, { recursive: true, force: true });
      log(`${final} already holds this state (same manifest, every file verified); kept it`);
      return;
    }
    const aside = await moveAside(dir, name, problem === null ? 'replaced' : 'damaged');
    faultPoint('checkpoint:replace');
    log(
      problem === null
        ? `${final} held a different state (an earlier attempt at this step); moved it aside to ${aside}`
        : `${final} is damaged (${problem}); moved it aside to ${aside}`,
    );
  }
  await rename(tmp, final);
}

/** Renames checkpoint `name` to `name.why` (or `name.why-2`, ...), out of every listing; returns the new path. */
async function moveAside(dir: string, name: string, why: 'damaged' | 'replaced'): Promise<string> {
  let aside = join(dir, `${name}.${why}`);
  for (let k = 2; existsSync(aside); k++) aside = join(dir, `${name}.${why}-${k}`);
  await rename(join(dir, name), aside);
  return aside;
}

/** Points `latest` at `name` (write latest.tmp, fsync, rename, fsync the directory). */
async function publishLatest(dir: string, name: string): Promise<void> {
  const latestTmp = join(dir, `${LATEST_FILE}.tmp`);
  await writeSynced(latestTmp, `${name}\n`);
  faultPoint('checkpoint:latest-tmp');
  await rename(latestTmp, join(dir, LATEST_FILE));
  await syncDir(dir);
}

const stepOf = (name: string) => Number(STEP_DIR_PATTERN.exec(name)?.[1]);

/** Step directories of `dir`, oldest first. */
export function listCheckpoints(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => STEP_DIR_PATTERN.test(f))
    .sort((a, b) => stepOf(a) - stepOf(b));
}

/**
 * Deletes all but the newest `keepLast` checkpoints up to `newest` (the one just published;
 * later steps are an abandoned attempt's and stay until a save replaces them). Deletes nothing
 * before `newest` verifies again from disk: if it does not, it is moved aside and `latest` goes
 * back to the newest older checkpoint that verifies.
 */
export async function pruneCheckpoints(
  dir: string,
  keepLast: number,
  newest: string,
  log: SaveLog = () => {},
): Promise<void> {
  const upTo = listCheckpoints(dir).filter((n) => stepOf(n) <= stepOf(newest));
  const doomed = upTo.slice(0, Math.max(0, upTo.length - keepLast)).filter((n) => n !== newest);
  if (doomed.length === 0) return;
  const problem = checkpointProblem(join(dir, newest));
  if (problem !== null) {
    // latest leaves the damaged checkpoint before it is moved: a crash between the two is harmless
    const fallback = upTo
      .filter((n) => n !== newest)
      .reverse()
      .find((n) => checkpointProblem(join(dir, n)) === null);
    if (fallback) await publishLatest(dir, fallback);
    else await rm(join(dir, LATEST_FILE), { force: true });
    const aside = await moveAside(dir, newest, 'damaged');
    log(
      `${join(dir, newest)} is damaged (${problem}); moved it aside to ${aside}; ` +
        `latest is now ${fallback ?? 'unset (no checkpoint verifies)'}; nothing was pruned`,
    );
    return;
  }
  for (const name of doomed) await rm(join(dir, name), { recursive: true, force: true });
}

/**
 * Tidies what an interrupted save left behind: first, if `latest` names a directory a crash left
 * missing (between moving it aside and renaming its replacement in), puts back the newest copy
 * of it that verifies (the finished temporary directory, else the one moved aside); then removes
 * temporary directories and latest.tmp. Returns the names removed.
 */
export function cleanCheckpointTemps(runDir: string, log: SaveLog = () => {}): string[] {
  const dir = join(runDir, CHECKPOINTS_DIR);
  if (!existsSync(dir)) return [];
  recoverLatest(dir, log);
  const leftovers = readdirSync(dir).filter(
    (f) => f.startsWith('.tmp-') || f === `${LATEST_FILE}.tmp`,
  );
  for (const f of leftovers) rmSync(join(dir, f), { recursive: true, force: true });
  return leftovers;
}

function recoverLatest(dir: string, log: SaveLog): void {
  const latest = join(dir, LATEST_FILE);
  if (!existsSync(latest) || statSync(latest).isDirectory()) return; // not ours to mend (read.ts)
  const name = readFileSync(latest, 'utf8').trim();
  if (!STEP_DIR_PATTERN.test(name) || existsSync(join(dir, name))) return;
  const copyNumber = (f: string) => Number(/-(\d+)$/.exec(f)?.[1] ?? 1);
  const entries = readdirSync(dir);
  const candidates = [
    ...entries.filter((f) => f.startsWith(`.tmp-${name}-`)),
    ...entries
      .filter((f) => f === `${name}.replaced` || f.startsWith(`${name}.replaced-`))
      .sort((a, b) => copyNumber(b) - copyNumber(a)),
  ];
  const good = candidates.find((f) => checkpointProblem(join(dir, f)) === null);
  if (!good) return;
  renameSync(join(dir, good), join(dir, name));
  log(
    `${join(dir, LATEST_FILE)} named ${name}, which an interrupted save had moved; put ${good} back in its place`,
  );
}
