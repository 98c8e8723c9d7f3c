// Reading checkpoints. Whatever reads one (train --resume, eval, generate, serve, the checkpoint
// tools) takes a run directory (its checkpoints/latest) or a checkpoint directory, and checks it
// first: the manifest's format and version and every field the readers rely on (a step
// directory's manifest must say its step), then every file's presence, size and sha256, then the
// tensors' names and shapes against the config. A problem is one line naming the file.

import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Backend } from '../kernels/backend.ts';
import type { GPTConfig } from '../model/config.ts';
import { MODEL_KEYS, validateConfig } from '../model/config.ts';
import { GPT2 } from '../model/gpt2.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import { WeftError, check } from '../util/errors.ts';
import { hashFile, readBytes, readJson, sha256 } from '../util/files.ts';
import { isObject } from '../util/json.ts';
import type { CheckpointManifest, CheckpointMeta, CheckpointState } from './format.ts';
import {
  CHECKPOINTS_DIR,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  LATEST_FILE,
  MANIFEST_FILE,
  MODEL_FILE,
  OPTIMIZER_FILE,
  STEP_DIR_PATTERN,
} from './format.ts';
import { readSafetensors } from './safetensors.ts';
import { loadWeights } from './weights.ts';

const bad = (message: string) => new WeftError('WEFT_E_FORMAT', message);

/** The checkpoint directory `path` names: itself, or the one its checkpoints/latest names. */
export function resolveCheckpoint(path: string): string {
  if (existsSync(join(path, MANIFEST_FILE))) return path;
  const latest = join(path, CHECKPOINTS_DIR, LATEST_FILE);
  if (!existsSync(latest)) {
    if (!existsSync(path)) throw bad(`checkpoint ${path} does not exist`);
    throw bad(
      `${path} holds no checkpoint (no ${MANIFEST_FILE}, no ${CHECKPOINTS_DIR}/${LATEST_FILE}); pass a run directory written by weft train or a checkpoint directory`,
    );
  }
  if (statSync(latest).isDirectory())
    throw bad(
      `${latest} is a directory, not the file naming the newest checkpoint; remove it and write the newest checkpoint's name there (echo step-NNNNNNNN > ${latest}), or pass a checkpoint directory`,
    );
  const name = readFileSync(latest, 'utf8').trim();
  if (!STEP_DIR_PATTERN.test(name))
    throw bad(`${latest} names "${name}", which is not a checkpoint directory name`);
  const dir = join(path, CHECKPOINTS_DIR, name);
  if (!existsSync(join(dir, MANIFEST_FILE)))
    throw bad(`${latest} names ${name}, but ${dir} holds no ${MANIFEST_FILE}`);
  return dir;
}

const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
const isOptional = (v: unknown, type: string) => v === undefined || typeof v === type;

/**
 * What the readers rely on in a manifest besides format, version, config and files: each field,
 * what it must be, and the test. Every kind of checkpoint has them all (an imported Hugging Face
 * model's step 0: an empty loader, data path '' and metrics {}); `kernel` is absent in
 * checkpoints of older weft, `data.referenceSha256` in all but dpo runs'.
 */
const FIELDS: [keyof CheckpointMeta, string, (v: unknown) => boolean][] = [
  ['step', 'an integer >= 0', isCount],
  ['tokensSeen', 'an integer >= 0', isCount],
  ['adamSteps', 'an integer >= 0', isCount],
  ['tokenizer', 'a weft tokenizer object', isObject],
  ['loader', 'an object: the data cursor', isObject],
  ['rng', 'an object with a numeric seed', (v) => isObject(v) && typeof v.seed === 'number'],
  [
    'data',
    'an object with the strings path and manifestSha256',
    (v) =>
      isObject(v) &&
      typeof v.path === 'string' &&
      typeof v.manifestSha256 === 'string' &&
      isOptional(v.referenceSha256, 'string'),
  ],
  ['metrics', 'an object', isObject],
  ['kernel', 'a string, or absent', (v) => isOptional(v, 'string')],
];

/** Whether `entry` of a manifest's files is a plain file name with its size and sha256. */
const isFileEntry = ([name, f]: [string, unknown]) =>
  /^[^/\\]+$/.test(name) &&
  name !== '.' &&
  name !== '..' &&
  isObject(f) &&
  isCount(f.bytes) &&
  typeof f.sha256 === 'string' &&
  /^[0-9a-f]{64}$/.test(f.sha256);

/**
 * The manifest of checkpoint directory `dir`, checked for format and version, and for every field
 * the readers rely on; a step directory's manifest must hold its step (the manifest is not in
 * the sha256 list, so this is the check that it belongs there).
 */
export function readManifest(dir: string): CheckpointManifest {
  const path = join(dir, MANIFEST_FILE);
  const m = readJson(path, 'checkpoint manifest') as Partial<CheckpointManifest> | null;
  if (typeof m !== 'object' || m === null || m.format !== CHECKPOINT_FORMAT)
    throw bad(`${path} is not a weft checkpoint manifest`);
  if (typeof m.version !== 'number' || m.version > CHECKPOINT_VERSION) {
    throw bad(
      `${path} has format version ${String(m.version)}, newer than this weft reads (${CHECKPOINT_VERSION}); upgrade weft`,
    );
  }
  check(
    typeof m.config === 'object' &&
      m.config !== null &&
      MODEL_KEYS.every((k) => typeof m.config?.[k] === 'number'),
    'WEFT_E_FORMAT',
    `${path} lacks the model config (${MODEL_KEYS.join(', ')})`,
  );
  check(
    isObject(m.files) && Object.entries(m.files).every(isFileEntry),
    'WEFT_E_FORMAT',
    `${path} lists no valid files (each a plain file name with its bytes and sha256); the manifest is damaged: restore it, or use another checkpoint`,
  );
  for (const [key, what, valid] of FIELDS) {
    if (!valid(m[key]))
      throw bad(
        `${path} ${m[key] === undefined ? 'lacks' : 'has an invalid'} "${key}" (${what}); the manifest is damaged: restore it, or use another checkpoint`,
      );
  }
  const named = /step-(\d{8,})/.exec(basename(resolve(dir)))?.[1];
  if (named !== undefined && Number(named) !== m.step)
    throw bad(
      `${path} says step ${String(m.step)} but its directory is named for step ${Number(named)}: the manifest does not belong there; restore it, or use another checkpoint`,
    );
  return m as CheckpointManifest;
}

/**
 * Checks every file the manifest lists (present, its size, its sha256), each described by
 * `measure` (the whole bytes, or a streamed hash); throws naming the first file that differs.
 */
function checkFiles(
  dir: string,
  manifest: CheckpointManifest,
  measure: (path: string) => { bytes: number; sha256: string },
): void {
  for (const name of [MODEL_FILE, OPTIMIZER_FILE]) {
    if (!manifest.files[name]) throw bad(`${join(dir, MANIFEST_FILE)} does not list ${name}`);
  }
  for (const [name, { bytes, sha256: digest }] of Object.entries(manifest.files)) {
    const path = join(dir, name);
    if (!existsSync(path)) throw bad(`${path} is missing`);
    const actual = measure(path);
    if (actual.bytes !== bytes)
      throw bad(
        `${path} is ${actual.bytes} bytes but the manifest says ${bytes} (truncated or replaced)`,
      );
    if (actual.sha256 !== digest)
      throw bad(`${path} does not match its sha256 in the manifest (the file is damaged)`);
  }
}

/** Reads every file the manifest lists, checked; returns the bytes by name. */
function verifiedFiles(dir: string, manifest: CheckpointManifest): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  checkFiles(dir, manifest, (path) => {
    const data = readBytes(path, 'checkpoint file');
    files.set(basename(path), data);
    return { bytes: data.length, sha256: sha256(data) };
  });
  return files;
}

/**
 * What is wrong with checkpoint directory `dir` (its manifest, or a listed file's presence, size
 * or sha256), or null when every file matches. Hashes in pieces: no file is held in memory.
 */
export function checkpointProblem(dir: string): string | null {
  try {
    checkFiles(dir, readManifest(dir), hashFile);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Checks a checkpoint completely (manifest, files, tensor names and shapes); returns its state. */
export function loadCheckpoint(path: string): CheckpointState & { dir: string } {
  const dir = resolveCheckpoint(path);
  const manifest = readManifest(dir);
  const files = verifiedFiles(dir, manifest);
  const config = validateConfig({ ...(manifest.config as GPTConfig) });
  const n = new GPT2(config).paramCount;
  const tensors = (name: string, prefix = '') => {
    const out = new Float32Array(n);
    loadWeights(
      out,
      config,
      readSafetensors(files.get(name) as Buffer, join(dir, name)),
      prefix,
      join(dir, name),
    );
    return out;
  };
  const { files: _files, format: _format, version: _version, ...meta } = manifest;
  return {
    ...meta,
    dir,
    params: tensors(MODEL_FILE),
    m: tensors(OPTIMIZER_FILE, 'm/'),
    v: tensors(OPTIMIZER_FILE, 'v/'),
  };
}

export interface LoadedModel {
  model: GPT2;
  config: GPTConfig & Record<string, unknown>;
  tokenizer: Tokenizer;
  dir: string;
  step: number;
}

/** The model of a checkpoint (weights only) on `backend`, with its config and tokenizer, after all checks. */
export function loadModel(path: string, backend?: Backend): LoadedModel {
  const state = loadCheckpoint(path);
  const config = state.config;
  const tokenizer = tokenizerFromJSON(state.tokenizer, join(state.dir, MANIFEST_FILE));
  return {
    model: new GPT2(config, { params: state.params, backend }),
    config,
    tokenizer,
    dir: state.dir,
    step: state.step,
  };
}
