// Tokenizers: GPT-2 ids against js-tiktoken (the outside oracle), round trips of arbitrary text
// for every kind, the BPE trainer's determinism, and tokenizer.json.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';
import { describe, expect, it } from 'vitest';
import { BpeTokenizer } from '../../src/tokenizer/bpe.ts';
import {
  createTokenizer,
  parseTokenizerSpec,
  tokenizerFromJSON,
} from '../../src/tokenizer/index.ts';
import { trainBpe } from '../../src/tokenizer/train-bpe.ts';
import { Rng } from '../../src/util/rng.ts';
import { ROOT } from '../helpers/cli.ts';
import { expectWeftError } from '../helpers/errors.ts';

const shakespeare = readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8');
const gpt2 = BpeTokenizer.gpt2();
const tiktoken = new Tiktoken(gpt2Ranks);

const VARIED = [
  'Hello world',
  '  leading spaces, trailing   \n\n\n  whitespace runs\t\t and tabs   ',
  "It's, we're, they've, I'm, you'll, he'd -- contractions; 'quoted' 's",
  'Unicode: naïve café façade Ærøskøbing Zürich — “curly” ‘quotes’ … ½ ∑ ∞',
  'CJK 日本語のテキスト 中文 한국어, RTL עברית العربية',
  'Emoji 👩‍👩‍👧‍👦 🎉🎉 🇫🇷 ✔️ and a lone 🚀',
  'function add(a, b) {\n    return a + b; // sum\n}\n\tconst x = [1, 2, 3].map((n) => n ** 2);',
  'Numbers 1234567890 3.14159 1e-10 0xFF 100,000,000',
  '\u0000\u0001 control \u007f chars \r\n CRLF \u00a0 nbsp \u2028 sep',
  shakespeare.slice(0, 5000),
];

function randomText(rng: Rng, length: number): string {
  const ranges = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0x2ff],
    [0x400, 0x4ff],
    [0x3040, 0x30ff],
    [0x4e00, 0x4fff],
    [0x1f300, 0x1f6ff],
    [0x10000, 0x10ffff],
  ];
  let s = '';
  for (let i = 0; i < length; i++) {
    const [lo, hi] = ranges[rng.int(ranges.length)];
    s += String.fromCodePoint(lo + rng.int(hi - lo + 1));
  }
  return s;
}

describe('gpt2 tokenizer', () => {
  it('encodes "Hello world" to GPT-2 ids [15496, 995]', () => {
    expect(gpt2.encode('Hello world')).toEqual([15496, 995]);
    expect(gpt2.specials.endOfText).toBe(50256);
  });

  it.each(VARIED.map((t, i) => [i, t]))('matches js-tiktoken on varied text #%i', (_, text) => {
    expect(gpt2.encode(text)).toEqual(tiktoken.encode(text));
    expect(gpt2.decode(gpt2.encode(text))).toBe(text);
  });

  it('matches js-tiktoken on the whole of tinyshakespeare', () => {
    expect(gpt2.encode(shakespeare)).toEqual(tiktoken.encode(shakespeare));
  });

  it('encodes <|endoftext|> as 50256 only when specials are parsed', () => {
    const text = 'a<|endoftext|>b';
    expect(gpt2.encodeWithSpecials(text)).toEqual(tiktoken.encode(text, 'all'));
    expect(gpt2.encode(text)).not.toContain(50256);
    expect(gpt2.decode(gpt2.encode(text))).toBe(text);
  });
});

describe('bpe trainer', () => {
  it('learns the most frequent pair first, ties to the smaller pair', () => {
    // words "aaab" and " aaab": (a,a) occurs 4 times, (a,b) twice, (' ',a) once
    const merges = trainBpe('aaab aaab', 258);
    expect(merges.slice(0, 2)).toEqual([97, 97]);
    expect(merges).toHaveLength(4);
  });

  it('is deterministic for a given corpus', () => {
    const text = shakespeare.slice(0, 100_000);
    expect(trainBpe(text, 600)).toEqual(trainBpe(text, 600));
    expect(trainBpe(text, 600)).not.toEqual(trainBpe(shakespeare.slice(100_000, 200_000), 600));
  });

  it('stops early when no pair repeats', () => {
    expect(trainBpe('abc', 1000)).toEqual([]);
  });

  it('compresses tinyshakespeare with 4096 tokens', () => {
    const tok = createTokenizer('bpe:4096', shakespeare);
    expect(tok.name).toBe('bpe:4096');
    expect(tok.vocabSize).toBe(4096 + 3);
    const ids = tok.encode(shakespeare);
    expect(shakespeare.length / ids.length).toBeGreaterThan(3);
  });
});

describe.each([
  ['byte', BpeTokenizer.bytes()],
  ['bpe', createTokenizer('bpe:1000', shakespeare.slice(0, 200_000))],
  ['gpt2', gpt2],
])('%s round trips', (_, tok) => {
  it('any Unicode text (random code points in every plane)', () => {
    const rng = new Rng(11);
    for (let i = 0; i < 200; i++) {
      const text = randomText(rng, 1 + rng.int(40));
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  it('random byte strings (decoded as UTF-8 with replacement)', () => {
    const rng = new Rng(12);
    for (let i = 0; i < 200; i++) {
      const bytes = Uint8Array.from({ length: 1 + rng.int(64) }, () => rng.int(256));
      const text = new TextDecoder().decode(bytes);
      expect(tok.decode(tok.encode(text))).toBe(text);
    }
  });

  it('counts the UTF-8 bytes each token stands for', () => {
    const text = 'naïve 🚀 text';
    const total = tok.encode(text).reduce((n, id) => n + tok.byteLength(id), 0);
    expect(total).toBe(Buffer.byteLength(text));
    expect(tok.byteLength(tok.specials.imEnd)).toBe(0);
  });

  it('saves to tokenizer.json and loads back the same tokenizer', () => {
    const again = tokenizerFromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
    expect(again.name).toBe(tok.name);
    expect(again.encode(VARIED[3])).toEqual(tok.encode(VARIED[3]));
  });
});

describe('specials and errors', () => {
  it('places the specials after the ordinary vocabulary', () => {
    const byte = BpeTokenizer.bytes();
    expect(byte.encode('abc')).toEqual([97, 98, 99]);
    expect(byte.specials).toEqual({ endOfText: 256, imStart: 257, imEnd: 258 });
    expect(byte.encodeWithSpecials('<|im_start|>x<|im_end|>')).toEqual([257, 120, 258]);
  });

  it('rejects unknown specs and bad tokenizer.json', () => {
    expectWeftError(
      () => parseTokenizerSpec('bpe:12'),
      'WEFT_E_CONFIG',
      /unknown tokenizer "bpe:12"/,
    );
    expectWeftError(
      () => parseTokenizerSpec('sentencepiece'),
      'WEFT_E_CONFIG',
      /use gpt2, byte, or bpe:N/,
    );
    expectWeftError(
      () => tokenizerFromJSON({ kind: 'bpe' }),
      'WEFT_E_FORMAT',
      /not a weft tokenizer/,
    );
    expectWeftError(
      () =>
        tokenizerFromJSON({ format: 'weft-tokenizer', version: 1, kind: 'bpe', merges: [300, 1] }),
      'WEFT_E_FORMAT',
      /merge 0 joins ids 300 and 1/,
    );
    expectWeftError(
      () => gpt2.decode([50259]),
      'WEFT_E_TOKEN',
      /token id 50259 is outside the gpt2 vocabulary/,
    );
  });
});
