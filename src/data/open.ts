// Opens what `--data` names: a prepared dataset directory (has dataset.json), or raw text (a
// file, or a directory of files) that is prepared on the fly into a cache directory. A cache
// whose sources and tokenizer spec match the input is reused instead of prepared again.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../util/errors.ts';
import { sha256 } from '../util/files.ts';
import type { Dataset, DatasetManifest } from './dataset.ts';
import { loadDataset } from './dataset.ts';
import type { PrepareOptions } from './prepare.ts';
import { prepareDataset, readDocuments } from './prepare.ts';

export function isPreparedDataset(path: string): boolean {
  return existsSync(path) && statSync(path).isDirectory() && existsSync(join(path, 'dataset.json'));
}

function cacheMatches(cacheDir: string, input: string, options: PrepareOptions): boolean {
  if (!isPreparedDataset(cacheDir)) return false;
  try {
    const { manifest } = loadDataset(cacheDir);
    const sources = readDocuments(input).map((d) => ({ name: d.name, sha256: sha256(d.text) }));
    const same = (m: DatasetManifest) =>
      m.tokenizerSpec === options.tokenizer &&
      m.valFraction === options.valFraction &&
      JSON.stringify(m.sources.map((s) => ({ name: s.name, sha256: s.sha256 }))) === JSON.stringify(sources);
    return same(manifest);
  } catch {
    return false; // a damaged cache is simply prepared again
  }
}

/** The dataset at `path`, preparing raw text into `cacheDir` when needed. */
export function openDataset(path: string, cacheDir: string, options: PrepareOptions): Dataset {
  if (isPreparedDataset(path)) return loadDataset(path);
  if (!existsSync(path)) {
    throw new WeftError('WEFT_E_FORMAT', `data ${path} does not exist; pass a text file, a directory of text files, or a prepared dataset`);
  }
  if (!cacheMatches(cacheDir, path, options)) {
    options.log?.(`preparing ${path} into ${cacheDir} (tokenizer ${options.tokenizer})`);
    prepareDataset(path, cacheDir, options);
  }
  return loadDataset(cacheDir);
}
