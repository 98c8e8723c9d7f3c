// A prepared dataset directory: dataset.json (the manifest), tokenizer.json and token files.
// Loading verifies every file's size and sha256 against the manifest before use.

import { join } from 'node:path';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { WeftError, check } from '../util/errors.ts';
import { readBytes, readJson, sha256 } from '../util/files.ts';
import type { LoadReport } from './jsonl.ts';
import type { RecordKind, Records } from './records.ts';
import { parseRecords } from './records.ts';
import type { TokenArray } from './token-file.ts';
import { decodeTokenFile } from './token-file.ts';

export const DATASET_FORMAT = 'weft-dataset';

export interface DatasetSplit {
  /** Its token files, in order (manifests written before version 2 call them `shards`). */
  tokenFiles: string[];
  tokens: number;
  /** UTF-8 bytes of the text the split was made from. */
  textBytes: number;
}

export interface DatasetManifest {
  format: typeof DATASET_FORMAT;
  /** 2: splits list `tokenFiles` (version 1 called them `shards`; both are read). */
  version: 1 | 2;
  /** Tokenizer name (e.g. bpe:4096) and the spec it was asked for (which prepare caches on). */
  tokenizer: string;
  tokenizerSpec: string;
  vocabSize: number;
  valFraction: number;
  sources: { name: string; bytes: number; sha256: string }[];
  splits: { train: DatasetSplit; val: DatasetSplit };
  files: { name: string; bytes: number; sha256: string }[];
  /** Absent: text. "sft" or "preference": tokenised JSONL records (records.ts), no token files. */
  kind?: RecordKind;
  /** Records datasets: the context they were checked against, and the load report. */
  seqLen?: number;
  records?: LoadReport & { train: number; val: number };
}

export interface Dataset {
  dir: string;
  manifest: DatasetManifest;
  tokenizer: Tokenizer;
  train: TokenArray;
  /** Empty when valFraction was 0. */
  val: TokenArray;
  /** A records dataset's tokenised records (train and val above are then empty). */
  records?: Records;
}

function concat(parts: TokenArray[]): TokenArray {
  if (parts.length === 1) return parts[0];
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = parts.every((p) => p instanceof Uint16Array) ? new Uint16Array(total) : new Uint32Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Loads and verifies the dataset in `dir`. */
export function loadDataset(dir: string): Dataset {
  const path = join(dir, 'dataset.json');
  const manifest = readJson(path, 'dataset manifest') as DatasetManifest;
  check(
    manifest?.format === DATASET_FORMAT,
    'WEFT_E_FORMAT',
    `${path} is not a weft dataset manifest; run weft prepare to make one`,
  );
  check(
    manifest.version === 1 || manifest.version === 2,
    'WEFT_E_FORMAT',
    `${path} has version ${manifest.version}; this weft reads versions 1 and 2`,
  );
  const verified = new Map<string, Buffer>();
  for (const file of manifest.files) {
    const bytes = readBytes(join(dir, file.name), 'dataset file');
    const digest = sha256(bytes);
    if (bytes.length !== file.bytes || digest !== file.sha256) {
      throw new WeftError(
        'WEFT_E_FORMAT',
        `dataset file ${join(dir, file.name)} does not match dataset.json (size ${bytes.length} vs ${file.bytes}, sha256 ${digest.slice(0, 12)}... vs ${file.sha256.slice(0, 12)}...); re-run weft prepare`,
      );
    }
    verified.set(file.name, bytes);
  }
  const take = (name: string) => {
    const bytes = verified.get(name);
    if (!bytes) throw new WeftError('WEFT_E_FORMAT', `${path} lists ${name} without its sha256`);
    return bytes;
  };
  const tokenizer = tokenizerFromJSON(JSON.parse(take('tokenizer.json').toString('utf8')), join(dir, 'tokenizer.json'));
  const split = (s: DatasetSplit & { shards?: string[] }) =>
    concat((s.tokenFiles ?? s.shards ?? []).map((name) => decodeTokenFile(take(name), join(dir, name))));
  if (manifest.kind === 'sft' || manifest.kind === 'preference') {
    const records = parseRecords(manifest.kind, take('train.jsonl'), take('val.jsonl'));
    return { dir, manifest, tokenizer, train: new Uint16Array(0), val: new Uint16Array(0), records };
  }
  return { dir, manifest, tokenizer, train: split(manifest.splits.train), val: split(manifest.splits.val) };
}
