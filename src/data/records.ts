// Post-training data as a prepared dataset: a JSON Lines file of conversations (the sft
// objective) or preference pairs (reward, dpo) tokenised once with the model's tokenizer into a
// dataset directory, like text (prepare.ts): dataset.json (kind "sft" or "preference", the
// tokenizer's sha256, what was skipped and why), tokenizer.json, train.jsonl and val.jsonl (one
// tokenised record per line), every file's sha256 checked on load. The last valFraction of the
// kept records (at least one when there are two or more) is held out. Records that cannot train
// are counted and reported, never fatal: no assistant turn, no chosen/rejected, a prompt as long
// as the context (seqLen) or longer.

import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EncodedChat } from '../tokenizer/chat.ts';
import { encodeChat } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { check } from '../util/errors.ts';
import { hashFile, sha256, writeFileAtomic } from '../util/files.ts';
import type { DatasetManifest } from './dataset.ts';
import { DATASET_FORMAT } from './dataset.ts';
import type { LoadReport } from './jsonl.ts';
import { SkipRecord, describeReport, readJsonl } from './jsonl.ts';
import { pairFits } from './pairs.ts';
import type { PreferencePair } from './preference.ts';
import { encodePreference, preferenceText } from './preference.ts';
import { sftConversations } from './sft.ts';

export type RecordKind = 'sft' | 'preference';

export interface RecordsOptions {
  kind: RecordKind;
  tokenizer: Tokenizer;
  valFraction: number;
  /** The context each example must fit (prompts at least one token shorter). */
  seqLen: number;
  log?: (line: string) => void;
}

/** The tokenised records of a prepared sft or preference dataset. */
export type Records =
  | { kind: 'sft'; train: EncodedChat[]; val: EncodedChat[] }
  | { kind: 'preference'; train: PreferencePair[]; val: PreferencePair[] };

/** What a dataset's tokenizer is recorded as: its JSON's sha256 (it may come from a model). */
export function tokenizerIdentity(tokenizer: Tokenizer): string {
  return `sha256:${sha256(JSON.stringify(tokenizer.toJSON()))}`;
}

/**
 * The records of JSONL file `input`, tokenised, with the load report (what was skipped and why).
 * Examples must have an assistant token within seqLen + 1 tokens, prompts fit below seqLen.
 */
export function readRecords(
  input: string,
  options: Pick<RecordsOptions, 'kind' | 'tokenizer' | 'seqLen'>,
): { records: Records; report: LoadReport } {
  const { tokenizer, seqLen } = options;
  if (options.kind === 'sft') {
    const { items, report } = readJsonl(input, (record) =>
      sftConversations(record).map((messages) => {
        const chat = encodeChat(tokenizer, messages);
        if (!chat.trainMask.subarray(1, seqLen + 1).includes(1))
          throw new SkipRecord('no assistant token within the context');
        return chat;
      }),
    );
    return { records: { kind: 'sft', train: items, val: [] }, report };
  }
  const { items, report } = readJsonl(input, (record) =>
    preferenceText(record).map((text) => {
      const pair = encodePreference(tokenizer, text);
      if (!pairFits(pair, seqLen)) throw new SkipRecord('prompt longer than the context');
      return pair;
    }),
  );
  return { records: { kind: 'preference', train: items, val: [] }, report };
}

/** One tokenised record as a line of train.jsonl or val.jsonl. */
function recordLine(item: EncodedChat | PreferencePair): string {
  const json = 'ids' in item ? { ids: item.ids, mask: Array.from(item.trainMask).join('') } : item;
  return `${JSON.stringify(json)}\n`;
}

/** Writes the dataset of JSONL file `input` into `outDir`; returns its manifest. */
export function prepareRecords(input: string, outDir: string, options: RecordsOptions): DatasetManifest {
  const { valFraction, tokenizer } = options;
  check(
    valFraction >= 0 && valFraction <= 0.5,
    'WEFT_E_CONFIG',
    `valFraction=${valFraction} must be between 0 and 0.5`,
  );
  const { records, report } = readRecords(input, options);
  const items: (EncodedChat | PreferencePair)[] = records.train;
  check(
    items.length > 0,
    'WEFT_E_FORMAT',
    `${input} holds no usable ${options.kind} records (${JSON.stringify(report.skipped)}); see docs/alignment.md for the formats`,
  );
  const held = valFraction === 0 || items.length < 2 ? 0 : Math.max(1, Math.round(items.length * valFraction));
  const split = { train: items.slice(0, items.length - held), val: items.slice(items.length - held) };
  options.log?.(
    `${options.kind} records of ${input}: ${describeReport(report)}; ${split.train.length.toLocaleString('en-US')} train / ${split.val.length.toLocaleString('en-US')} held out`,
  );
  mkdirSync(outDir, { recursive: true });
  const files: DatasetManifest['files'] = [];
  const save = (name: string, bytes: string) => {
    writeFileAtomic(join(outDir, name), bytes);
    files.push({ name, bytes: Buffer.byteLength(bytes), sha256: sha256(bytes) });
  };
  save('tokenizer.json', `${JSON.stringify(tokenizer.toJSON())}\n`);
  const splits = {} as DatasetManifest['splits'];
  for (const name of ['train', 'val'] as const) {
    save(`${name}.jsonl`, split[name].map(recordLine).join(''));
    splits[name] = { tokenFiles: [], tokens: 0, textBytes: 0 };
  }
  const source = { name: basename(input), ...hashFile(input) };
  const manifest: DatasetManifest = {
    format: DATASET_FORMAT,
    version: 2,
    kind: options.kind,
    tokenizer: tokenizer.name,
    tokenizerSpec: tokenizerIdentity(tokenizer),
    vocabSize: tokenizer.vocabSize,
    valFraction,
    seqLen: options.seqLen,
    records: { ...report, train: split.train.length, val: split.val.length },
    sources: [source],
    splits,
    files,
  };
  writeFileAtomic(join(outDir, 'dataset.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The records of a prepared sft or preference dataset from its verified files. */
export function parseRecords(kind: RecordKind, train: Buffer, val: Buffer): Records {
  const lines = (b: Buffer) =>
    b
      .toString('utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  if (kind === 'sft') {
    const chat = (r: Record<string, unknown>): EncodedChat => ({
      ids: r.ids as number[],
      trainMask: Uint8Array.from(r.mask as string, (c) => (c === '1' ? 1 : 0)),
    });
    return { kind, train: lines(train).map(chat), val: lines(val).map(chat) };
  }
  const pair = (r: Record<string, unknown>) => r as unknown as PreferencePair;
  return { kind, train: lines(train).map(pair), val: lines(val).map(pair) };
}
