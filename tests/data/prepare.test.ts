// weft prepare's library side: shards, tokenizer.json and a verified dataset.json from text.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDataset } from '../../src/data/dataset.ts';
import { prepareDataset, splitTrainVal } from '../../src/data/prepare.ts';
import { ROOT } from '../helpers/cli.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { tempDir } from '../helpers/tmp.ts';

const text = readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 50_000);

describe('prepareDataset', () => {
  it('writes token files, tokenizer and a manifest that loads back', () => {
    const dir = tempDir();
    const input = join(dir, 'in.txt');
    writeFileSync(input, text);
    const out = join(dir, 'ds');
    const manifest = prepareDataset(input, out, { tokenizer: 'bpe:400', valFraction: 0.1 });
    expect(manifest.tokenizer).toBe('bpe:400');
    expect(manifest.files.map((f) => f.name)).toEqual(['tokenizer.json', 'train-00000.bin', 'val-00000.bin']);
    const ds = loadDataset(out);
    expect(ds.train.length).toBe(manifest.splits.train.tokens);
    expect(ds.val.length).toBe(manifest.splits.val.tokens);
    // train + val decode back to the text, each part closed by <|endoftext|>
    const eot = ds.tokenizer.specials.endOfText;
    expect(ds.train[ds.train.length - 1]).toBe(eot);
    const decoded = ds.tokenizer.decode(ds.train.subarray(0, -1)) + ds.tokenizer.decode(ds.val.subarray(0, -1));
    expect(decoded).toBe(text);
    expect(manifest.splits.val.textBytes / Buffer.byteLength(text)).toBeCloseTo(0.1, 2);
  });

  it('still reads a version-1 manifest, whose splits call their token files shards', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in.txt'), text);
    const out = join(dir, 'ds');
    const manifest = prepareDataset(join(dir, 'in.txt'), out, { tokenizer: 'byte', valFraction: 0.1 });
    const v1 = {
      ...manifest,
      version: 1,
      splits: Object.fromEntries(
        Object.entries(manifest.splits).map(([k, { tokenFiles, ...rest }]) => [k, { ...rest, shards: tokenFiles }]),
      ),
    };
    writeFileSync(join(out, 'dataset.json'), JSON.stringify(v1));
    expect(loadDataset(out).train.length).toBe(manifest.splits.train.tokens);
  });

  it('reads every file of a directory as a document', () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'b.txt'), 'second document\n');
    writeFileSync(join(dir, 'docs', 'a.txt'), 'first document\n');
    writeFileSync(join(dir, 'docs', '.hidden'), 'ignored');
    const m = prepareDataset(join(dir, 'docs'), join(dir, 'ds'), { tokenizer: 'byte', valFraction: 0 });
    expect(m.sources.map((s) => s.name)).toEqual(['a.txt', 'b.txt']);
    const ds = loadDataset(join(dir, 'ds'));
    expect(ds.tokenizer.decode(ds.train)).toBe('first document\n<|endoftext|>second document\n<|endoftext|>');
    expect(ds.val.length).toBe(0);
  });

  it('splits at a line break after the requested fraction', () => {
    expect(splitTrainVal('aaaa\nbbbb\ncccc\n', 0.5)).toEqual(['aaaa\nbbbb\n', 'cccc\n']);
    expect(splitTrainVal('abc', 0)).toEqual(['abc', '']);
  });

  it('refuses missing, empty and non-UTF-8 input with one line naming the file', () => {
    const dir = tempDir();
    expectWeftError(() => prepareDataset(join(dir, 'nope.txt'), join(dir, 'o'), { tokenizer: 'byte', valFraction: 0 }), 'WEFT_E_FORMAT', /data .*nope\.txt does not exist/);
    writeFileSync(join(dir, 'empty.txt'), '');
    expectWeftError(() => prepareDataset(join(dir, 'empty.txt'), join(dir, 'o'), { tokenizer: 'byte', valFraction: 0 }), 'WEFT_E_FORMAT', /empty\.txt is empty/);
    writeFileSync(join(dir, 'latin1.txt'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    expectWeftError(() => prepareDataset(join(dir, 'latin1.txt'), join(dir, 'o'), { tokenizer: 'gpt2', valFraction: 0 }), 'WEFT_E_FORMAT', /latin1\.txt is not valid UTF-8/);
  });

  it('refuses a dataset whose files no longer match the manifest', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'in.txt'), text.slice(0, 5000));
    prepareDataset(join(dir, 'in.txt'), join(dir, 'ds'), { tokenizer: 'byte', valFraction: 0.1 });
    const shard = join(dir, 'ds', 'train-00000.bin');
    const bytes = readFileSync(shard);
    bytes[100] ^= 1;
    writeFileSync(shard, bytes);
    expectWeftError(() => loadDataset(join(dir, 'ds')), 'WEFT_E_FORMAT', /train-00000\.bin does not match dataset\.json/);
    expectWeftError(() => loadDataset(dir), 'WEFT_E_FORMAT', /dataset manifest .*dataset\.json does not exist/);
  });
});
