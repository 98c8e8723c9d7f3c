// Opens what `--data` names: a prepared dataset directory (has dataset.json), or raw text (a
// file, or a directory of files) that is prepared on the fly into a cache directory. A cache
// whose sources and tokenizer spec match the input is reused instead of prepared again. A new
// cache is prepared beside the old one (cacheDir.tmp-PID) and swapped in only after every check
// has passed, so a refused or failed preparation leaves the existing cache as it was. The caller
// holds the run directory's lock, so what an interrupted swap left beside the cache is tidied:
// a cache moved aside and not replaced is put back, temporary copies are removed.

import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { WeftError } from '../util/errors.ts';
import { hashFile, readBytes, sha256 } from '../util/files.ts';
import type { Dataset, DatasetManifest } from './dataset.ts';
import { loadDataset } from './dataset.ts';
import type { PrepareOptions } from './prepare.ts';
import { prepareDataset, readDocuments, tokenizerSpecOf } from './prepare.ts';
import type { RecordsOptions } from './records.ts';
import { prepareRecords, tokenizerIdentity } from './records.ts';

export interface OpenOptions extends PrepareOptions {
  /**
   * Post-training data: --data is a JSONL file of this kind, tokenised with this tokenizer
   * (records.ts) instead of text prepared with `tokenizer`.
   */
  records?: Omit<RecordsOptions, 'valFraction' | 'log'>;
  /**
   * Checks the dataset before it is used (and, when freshly prepared, before it replaces the
   * cache); throws to refuse it. Gets the dataset and the sha256 of its dataset.json.
   */
  accept?: (dataset: Dataset, manifestSha256: string) => void;
  /**
   * Keep the cache a fresh preparation replaces, moved aside to cacheDir.old-PID (a replacement
   * run that has not started may need it back: train/run-dir.ts); the caller removes it.
   */
  keepReplaced?: boolean;
}

export function isPreparedDataset(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory() && existsSync(join(path, 'dataset.json'));
}

/** sha256 of the dataset.json of dataset directory `dir` (what a checkpoint records). */
export function datasetManifestSha256(dir: string): string {
  return sha256(readBytes(join(dir, 'dataset.json'), 'dataset manifest'));
}

function cacheMatches(cacheDir: string, input: string, options: OpenOptions): boolean {
  if (!isPreparedDataset(cacheDir)) return false;
  try {
    const { manifest } = loadDataset(cacheDir);
    const r = options.records;
    if (r)
      return (
        manifest.kind === r.kind &&
        manifest.tokenizerSpec === tokenizerIdentity(r.tokenizer) &&
        manifest.seqLen === r.seqLen &&
        manifest.valFraction === options.valFraction &&
        manifest.sources[0]?.sha256 === hashFile(input).sha256
      );
    if (manifest.kind) return false;
    const sources = readDocuments(input).map((d) => ({ name: d.name, sha256: sha256(d.text) }));
    const same = (m: DatasetManifest) =>
      m.tokenizerSpec === tokenizerSpecOf(options.tokenizer) &&
      m.valFraction === options.valFraction &&
      JSON.stringify(m.sources.map((s) => ({ name: s.name, sha256: s.sha256 }))) === JSON.stringify(sources);
    return same(manifest);
  } catch {
    return false; // a damaged cache is simply prepared again
  }
}

/** Loads dataset `dir` and puts it through `accept`. */
function checked(dir: string, options: OpenOptions): Dataset {
  const dataset = loadDataset(dir);
  options.accept?.(dataset, datasetManifestSha256(dir));
  return dataset;
}

/**
 * Replaces `cacheDir` by the finished `fresh` directory (the old one is removed only after, or,
 * with `keep`, left moved aside).
 */
function swapIn(fresh: string, cacheDir: string, keep = false): void {
  const old = `${cacheDir}.old-${process.pid}`;
  const hadOld = existsSync(cacheDir);
  if (hadOld) renameSync(cacheDir, old);
  renameSync(fresh, cacheDir);
  if (hadOld && !keep) rmSync(old, { recursive: true, force: true });
}

/** Puts back a cache an interrupted swap moved aside, and removes leftover copies beside it. */
function tidyCache(cacheDir: string, log: (line: string) => void): void {
  const parent = dirname(cacheDir);
  const name = basename(cacheDir);
  if (!existsSync(parent)) return;
  const beside = readdirSync(parent).filter(
    (f) => f.startsWith(`${name}.tmp-`) || f.startsWith(`${name}.old-`),
  );
  const old = beside.find((f) => f.startsWith(`${name}.old-`));
  if (old && !existsSync(cacheDir)) {
    renameSync(join(parent, old), cacheDir);
    log(`put back ${cacheDir}, which an interrupted preparation had moved to ${old}`);
  }
  for (const f of beside) rmSync(join(parent, f), { recursive: true, force: true });
}

/** The dataset at `path`, preparing raw text into `cacheDir` when needed (the run directory locked). */
export function openDataset(path: string, cacheDir: string, options: OpenOptions): Dataset {
  tidyCache(cacheDir, options.log ?? (() => {}));
  if (isPreparedDataset(path)) return checked(path, options);
  if (!existsSync(path)) {
    throw new WeftError('WEFT_E_FORMAT', `data ${path} does not exist; pass a text file, a directory of text files, or a prepared dataset`);
  }
  if (cacheMatches(cacheDir, path, options)) return checked(cacheDir, options);
  const given = options.records?.tokenizer ?? options.tokenizer;
  const tokenizer = typeof given === 'string' ? given : given.name;
  options.log?.(`preparing ${path} into ${cacheDir} (tokenizer ${tokenizer})`);
  const fresh = `${cacheDir}.tmp-${process.pid}`;
  rmSync(fresh, { recursive: true, force: true });
  try {
    const { valFraction, log } = options;
    if (options.records) prepareRecords(path, fresh, { ...options.records, valFraction, log });
    else prepareDataset(path, fresh, options);
    const dataset = checked(fresh, options);
    swapIn(fresh, cacheDir, options.keepReplaced);
    return { ...dataset, dir: cacheDir };
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
}
