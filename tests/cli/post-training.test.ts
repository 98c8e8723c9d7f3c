// The post-training command lines: `weft train --init` for sft, reward and dpo, `weft eval` on
// preference pairs (a reward model; a DPO policy with --reference) and on conversations, and the
// one-line refusals (an --init that is not a model, an architecture --set that differs from it,
// --init with --resume, data of the wrong kind, a JSONL file with no usable record) that leave
// an existing run as it was.

import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint } from '../../src/checkpoint/read.ts';
import { ModelHost } from '../../src/serve/models.ts';
import { ROOT, expectCliError, runCli } from '../helpers/cli.ts';
import { finalWeights } from '../helpers/runs.ts';

let dir: string;
let base: string;
const fast = ['--workers', '1', '--backend', 'reference'];

const pairs = Array.from({ length: 10 }, (_, i) => ({
  prompt: `Say ${i}.`,
  chosen: `${i}.`,
  rejected: 'No.',
}));
const chats = Array.from({ length: 10 }, (_, i) => ({
  messages: [
    { role: 'user', content: `Count to ${i}.` },
    { role: 'assistant', content: Array.from({ length: i + 1 }, (_, k) => k).join(' ') },
  ],
}));

const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
const jsonl = (records: unknown[]) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'weft-post-'));
  const text = file(
    'text.txt',
    readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000),
  );
  file('pairs.jsonl', jsonl(pairs));
  file('chats.jsonl', jsonl(chats));
  base = join(dir, 'base');
  const r = runCli([
    'train',
    '--config',
    'tiny',
    '--data',
    text,
    '--out',
    base,
    '--steps',
    '4',
    '--set',
    'blockSize=64',
    ...fast,
  ]);
  expect(r.status, r.stderr).toBe(0);
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const post = (objective: string, data: string, out: string, extra: string[] = []) =>
  runCli([
    'train', '--config', 'tiny', '--init', base, '--data', join(dir, data), '--out', join(dir, out),
    '--steps', '3', '--set', `objective=${objective}`, '--set', 'batchSize=2', ...fast, ...extra,
  ]); // prettier-ignore

describe('weft train --init and weft eval', () => {
  it('a reward model, scored on preference pairs', () => {
    const r = post('reward', 'pairs.jsonl', 'reward');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/objective reward/);
    expect(r.stdout).toMatch(/held-out preference accuracy [\d.]+ over 1 pairs/);
    const ev = runCli([
      'eval',
      '--checkpoint',
      join(dir, 'reward'),
      '--data',
      join(dir, 'pairs.jsonl'),
      '--json',
    ]);
    expect(ev.status, ev.stderr).toBe(0);
    const result = JSON.parse(ev.stdout) as Record<string, number>;
    expect(Object.keys(result)).toEqual(['pairs', 'accuracy', 'margin', 'loss']);
    expect(result.pairs).toBe(10);
    expect(ev.stderr).toMatch(/10 records, 10 kept/);
  }, 60_000);

  it('a DPO policy, scored against its reference; a language model without one is refused', () => {
    const r = post('dpo', 'pairs.jsonl', 'dpo');
    expect(r.status, r.stderr).toBe(0);
    const ev = runCli([
      'eval',
      '--checkpoint',
      join(dir, 'dpo'),
      '--reference',
      base,
      '--data',
      join(dir, 'pairs.jsonl'),
      '--json',
    ]);
    expect(ev.status, ev.stderr).toBe(0);
    expect((JSON.parse(ev.stdout) as { pairs: number }).pairs).toBe(10);
    // the reference against itself: every implicit reward is 0, so no pair is won
    const same = runCli([
      'eval',
      '--checkpoint',
      base,
      '--reference',
      base,
      '--data',
      join(dir, 'pairs.jsonl'),
      '--json',
    ]);
    expect(JSON.parse(same.stdout)).toEqual({ pairs: 10, accuracy: 0, margin: 0, loss: Math.LN2 });
    expectCliError(
      runCli(['eval', '--checkpoint', base, '--data', join(dir, 'pairs.jsonl')]),
      /has no score head: it is not a reward model; pass --reference/,
    );
  }, 60_000);

  it('supervised fine-tuning (seqLen checked against the model), and the masked loss of conversations', () => {
    // seqLen 48 fits the --init model's blockSize 64, not the tiny preset's 32
    const r = post('sft', 'chats.jsonl', 'sft', ['--set', 'seqLen=48']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/final validation: [\d.]+ bits per byte/);
    const ev = runCli([
      'eval',
      '--checkpoint',
      join(dir, 'sft'),
      '--data',
      join(dir, 'chats.jsonl'),
      '--json',
    ]);
    expect(ev.status, ev.stderr).toBe(0);
    const result = JSON.parse(ev.stdout) as Record<string, number>;
    expect(result.loss).toBeGreaterThan(0);
    expect(result.bpb).toBeGreaterThan(0);
    // a wider context than the run trained with sees more of each conversation
    const wide = runCli([
      'eval',
      '--checkpoint',
      join(dir, 'sft'),
      '--data',
      join(dir, 'chats.jsonl'),
      '--json',
      '--seq-len',
      '64',
    ]);
    expect(wide.status, wide.stderr).toBe(0);
    expect((JSON.parse(wide.stdout) as { tokens: number }).tokens).toBeGreaterThanOrEqual(
      result.tokens,
    );
    expectCliError(
      runCli([
        'eval',
        '--checkpoint',
        join(dir, 'sft'),
        '--data',
        join(dir, 'chats.jsonl'),
        '--seq-len',
        '65',
      ]),
      /--seq-len 65 is longer than the model's context \(blockSize 64\)/,
    );
  }, 60_000);
});

describe('one-line refusals that leave a run as it was', () => {
  it('an --init that is not a model, a differing architecture, --init with --resume', () => {
    const before = finalWeights(join(dir, 'reward'));
    const notModel = join(dir, 'not-a-model');
    cpSync(join(dir, 'pairs.jsonl'), join(dir, 'x.jsonl'));
    runCli(['prepare', '--input', join(dir, 'text.txt'), '--out', notModel, '--tokenizer', 'byte']);
    expectCliError(
      post('reward', 'pairs.jsonl', 'reward', ['--overwrite', '--init', notModel]),
      /--init .*not-a-model is not a model .*pass a run directory, a checkpoint directory or a Hugging Face GPT-2 directory/,
    );
    expectCliError(
      post('reward', 'pairs.jsonl', 'reward', ['--overwrite', '--init', join(dir, 'nope')]),
      /--init .*nope is not a directory/,
    );
    expectCliError(
      post('reward', 'pairs.jsonl', 'reward', ['--overwrite', '--set', 'nLayer=3']),
      /--set nLayer=3 differs from the --init model's nLayer=2/,
    );
    expectCliError(
      runCli(['train', '--out', join(dir, 'reward'), '--resume', '--init', base]),
      /--init starts a new run; a resumed run continues from its own checkpoint/,
    );
    expect(finalWeights(join(dir, 'reward')).equals(before)).toBe(true);
  });

  it('data of the wrong kind, and a file with no usable record', () => {
    const before = finalWeights(join(dir, 'sft'));
    expectCliError(post('sft', 'text.txt', 'sft', ['--overwrite']), /holds no usable sft records/);
    file('bad.jsonl', jsonl([{ prompt: 'x' }, { messages: [{ role: 'user', content: 'hi' }] }]));
    expectCliError(
      post('dpo', 'bad.jsonl', 'sft', ['--overwrite']),
      /bad\.jsonl holds no usable preference records \(\{"missing chosen\/rejected":2\}\)/,
    );
    expect(finalWeights(join(dir, 'sft')).equals(before)).toBe(true);
    // a prepared text dataset is not preference data
    expectCliError(
      post('dpo', 'not-a-model', 'sft', ['--overwrite']),
      /holds text data but objective=dpo trains on preference/,
    );
  });
});

describe("a language model without rows for the chat template's tokens (GPT-2's 50257)", () => {
  it('pre-trains on text, refuses chat in one line, and gains the rows for sft', () => {
    const lm = join(dir, 'gpt2-vocab');
    const text = ['--data', join(dir, 'text.txt'), '--set', 'tokenizer=gpt2'];
    const r = runCli([
      'train', '--config', 'tiny', ...text, '--set', 'vocabSize=50257', '--set', 'blockSize=64',
      '--out', lm, '--steps', '2', ...fast,
    ]); // prettier-ignore
    expect(r.status, r.stderr).toBe(0);
    const rows = /has 50257 token rows, none for the chat template's tokens \(ids 50257-50258\)/;
    expectCliError(runCli(['generate', '--checkpoint', lm, '--chat', '--prompt', 'Hi']), rows);
    expect(() => new ModelHost(lm, undefined)).toThrow(rows); // weft serve: every request is a chat
    // sft from it: wte grows to the tokenizer's 50259 rows, the first 50257 copied (lr 0 keeps them)
    const sft = join(dir, 'gpt2-vocab-sft');
    const s = runCli([
      'train', '--config', 'tiny', '--init', lm, '--data', join(dir, 'chats.jsonl'), '--out', sft,
      '--steps', '1', '--set', 'objective=sft', '--set', 'batchSize=2', '--set', 'lr=0',
      '--set', 'minLr=0', ...fast,
    ]); // prettier-ignore
    expect(s.status, s.stderr).toBe(0);
    const before = loadCheckpoint(lm);
    const after = loadCheckpoint(sft);
    expect(after.config.vocabSize).toBe(50259);
    const C = before.config.nEmbd;
    expect(after.params.subarray(0, 50257 * C)).toEqual(before.params.subarray(0, 50257 * C));
    // a text run of a smaller vocabulary than the text's ids is still refused
    expectCliError(
      runCli([
        'train',
        '--config',
        'tiny',
        ...text,
        '--set',
        'vocabSize=50000',
        '--out',
        join(dir, 'small'),
      ]),
      /config vocabSize=50000 is smaller than the tokenizer's 50257 ids \(gpt2\)/,
    );
    // nor can post-training data's chat tokens go without rows
    expectCliError(
      runCli([
        'train', '--config', 'tiny', '--data', join(dir, 'chats.jsonl'), '--set', 'tokenizer=gpt2',
        '--set', 'vocabSize=50257', '--set', 'objective=sft', '--out', join(dir, 'sft-50257'),
      ]), // prettier-ignore
      /config vocabSize=50257 has no rows for the chat template's tokens \(ids 50257-50258 of gpt2\), which sft data holds/,
    );
  }, 120_000);
});
