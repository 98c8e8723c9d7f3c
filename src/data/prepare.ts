// `weft prepare`: text file(s) -> token files, tokenizer.json and a dataset.json manifest with
// the sha256 of every file. Each document is split at (1 - valFraction) of its characters (moved
// to the next line break) into a train and a val part; a bpe:N tokenizer learns from the train
// parts only; every part ends with <|endoftext|>.

import { mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createTokenizer } from '../tokenizer/index.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { WeftError, check } from '../util/errors.ts';
import { readUtf8, sha256, writeFileAtomic } from '../util/files.ts';
import type { DatasetManifest, DatasetSplit } from './dataset.ts';
import { DATASET_FORMAT } from './dataset.ts';
import { tokenizerIdentity } from './records.ts';
import { encodeTokenFile } from './token-file.ts';

export interface PrepareOptions {
  /** 'gpt2', 'byte' or 'bpe:N'; or a tokenizer used as it is (a model's), recorded by its sha256. */
  tokenizer: string | Tokenizer;
  /** Fraction of each document held out for validation, 0 to 0.5. */
  valFraction: number;
  log?: (line: string) => void;
}

/** What dataset.json records as the tokenizer: the spec, or a given tokenizer's identity. */
export const tokenizerSpecOf = (tokenizer: string | Tokenizer): string =>
  typeof tokenizer === 'string' ? tokenizer : tokenizerIdentity(tokenizer);

/** Tokens per token file (uint16 files of 2^27 tokens are 256 MiB). */
export const TOKENS_PER_FILE = 2 ** 27;

interface Document {
  name: string;
  text: string;
}

/** The documents of `input`: one file, or every non-hidden file directly inside a directory. */
export function readDocuments(input: string): Document[] {
  let stat;
  try {
    stat = statSync(input);
  } catch {
    throw new WeftError('WEFT_E_FORMAT', `data ${input} does not exist; pass a text file or a directory of text files`);
  }
  const paths = stat.isDirectory()
    ? readdirSync(input)
        .filter((f) => !f.startsWith('.') && statSync(join(input, f)).isFile())
        .sort()
        .map((f) => join(input, f))
    : [input];
  check(paths.length > 0, 'WEFT_E_FORMAT', `data directory ${input} holds no files`);
  return paths.map((path) => {
    const text = readUtf8(path, 'data file');
    check(text.length > 0, 'WEFT_E_FORMAT', `data file ${path} is empty`);
    return { name: basename(path), text };
  });
}

/** Splits `text` at (1 - valFraction) of its length, moved forward to just after a line break. */
export function splitTrainVal(text: string, valFraction: number): [string, string] {
  if (valFraction === 0) return [text, ''];
  let at = Math.floor(text.length * (1 - valFraction));
  const newline = text.indexOf('\n', at);
  if (newline >= 0 && newline + 1 < text.length) at = newline + 1;
  return [text.slice(0, at), text.slice(at)];
}

function encodeParts(tokenizer: Tokenizer, parts: string[]): number[] {
  const ids: number[] = [];
  for (const part of parts) {
    if (part.length === 0) continue;
    for (const id of tokenizer.encode(part)) ids.push(id);
    ids.push(tokenizer.specials.endOfText);
  }
  return ids;
}

/** Writes the dataset of `input` into `outDir`; returns its manifest. */
export function prepareDataset(input: string, outDir: string, options: PrepareOptions): DatasetManifest {
  const { valFraction } = options;
  check(
    valFraction >= 0 && valFraction <= 0.5,
    'WEFT_E_CONFIG',
    `valFraction=${valFraction} must be between 0 and 0.5`,
  );
  const log = options.log ?? (() => {});
  const docs = readDocuments(input);
  const parts = docs.map((d) => splitTrainVal(d.text, valFraction));
  const trainParts = parts.map((p) => p[0]);
  const valParts = parts.map((p) => p[1]);

  const started = performance.now();
  const spec = options.tokenizer;
  const tokenizer = typeof spec === 'string' ? createTokenizer(spec, trainParts.join('')) : spec;
  log(`tokenizer ${tokenizer.name}: ${tokenizer.vocabSize} ids (${((performance.now() - started) / 1000).toFixed(1)} s)`);

  mkdirSync(outDir, { recursive: true });
  const files: DatasetManifest['files'] = [];
  const save = (name: string, bytes: Uint8Array | string) => {
    writeFileAtomic(join(outDir, name), bytes);
    files.push({ name, bytes: Buffer.byteLength(bytes), sha256: sha256(bytes) });
  };
  save('tokenizer.json', `${JSON.stringify(tokenizer.toJSON())}\n`);

  const splits = {} as Record<'train' | 'val', DatasetSplit>;
  for (const [split, texts] of [
    ['train', trainParts],
    ['val', valParts],
  ] as const) {
    const ids = encodeParts(tokenizer, texts);
    const fileNames: string[] = [];
    for (let i = 0; i === 0 || i * TOKENS_PER_FILE < ids.length; i++) {
      const name = `${split}-${String(i).padStart(5, '0')}.bin`;
      save(name, encodeTokenFile(ids.slice(i * TOKENS_PER_FILE, (i + 1) * TOKENS_PER_FILE), tokenizer.vocabSize));
      fileNames.push(name);
    }
    const textBytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
    splits[split] = { tokenFiles: fileNames, tokens: ids.length, textBytes };
    log(`${split}: ${ids.length.toLocaleString('en-US')} tokens from ${textBytes.toLocaleString('en-US')} bytes of text`);
  }

  const manifest: DatasetManifest = {
    format: DATASET_FORMAT,
    version: 2,
    tokenizer: tokenizer.name,
    tokenizerSpec: tokenizerSpecOf(spec),
    vocabSize: tokenizer.vocabSize,
    valFraction,
    sources: docs.map((d) => ({ name: d.name, bytes: Buffer.byteLength(d.text), sha256: sha256(d.text) })),
    splits,
    files,
  };
  writeFileAtomic(join(outDir, 'dataset.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
