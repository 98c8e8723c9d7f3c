// Benchmark: BPE training time and encode throughput on a corpus, with js-tiktoken (GPT-2 ranks)
// side by side in the same run. Encode figures are MB/s of UTF-8 text after one warm-up pass.
//
// usage: npm run bench:tokenizer -- [--input data/tinyshakespeare.txt] [--vocab 4096]

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import { BpeTokenizer } from '../src/tokenizer/bpe.ts';
import { trainBpe } from '../src/tokenizer/train-bpe.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    input: { type: 'string', default: join(root, 'data/tinyshakespeare.txt') },
    vocab: { type: 'string', default: '4096' },
  },
});
const text = readFileSync(values.input, 'utf8');
const mb = Buffer.byteLength(text) / 1e6;
const vocab = Number(values.vocab);

function time<T>(run: () => T): [T, number] {
  const start = performance.now();
  const result = run();
  return [result, (performance.now() - start) / 1000];
}

console.log(`corpus ${values.input}: ${mb.toFixed(2)} MB`);
const [merges, trainSeconds] = time(() => trainBpe(text, vocab));
console.log(
  `weft bpe:${vocab} training          ${trainSeconds.toFixed(2)} s (${merges.length / 2} merges)`,
);

for (const [name, makeEncode] of [
  [`weft bpe:${vocab}`, () => BpeTokenizer.fromMerges(merges)],
  ['weft gpt2', () => BpeTokenizer.gpt2()],
  ['js-tiktoken gpt2', () => new Tiktoken(gpt2Ranks)],
] as const) {
  const tok = makeEncode();
  tok.encode(text.slice(0, 100_000)); // warm up the JIT (and, for weft, part of the word cache)
  const [ids, seconds] = time(() => tok.encode(text));
  console.log(
    `${name.padEnd(20)} encode  ${(mb / seconds).toFixed(2).padStart(6)} MB/s  (${ids.length.toLocaleString('en-US')} tokens, ${(Buffer.byteLength(text) / ids.length).toFixed(2)} bytes/token)`,
  );
}
