// Worked example: supervised fine-tuning teaches a small model GSM8K's answer format.
//
//   1. base model: pre-trains configs/example-base.json on data/tinyshakespeare.txt into
//      runs/example-base (skipped when that run already has a checkpoint; --rebuild-base redoes it);
//   2. fine-tuning: trains configs/example-sft.json (objective sft) from that model on
//      data/gsm8k-train.jsonl into runs/example-sft; its valFraction holds out the last records
//      of the file (runs/example-sft/data/val.jsonl), which are never trained on;
//   3. evaluation, in this process: both models answer the held-out questions greedily
//      (temperature 0, stopping at <|im_end|>), and a table shows how often the answer ends in
//      GSM8K's format (a last line "#### <number>") and how often that number is right.
//
// Training runs as child processes of `node bin/weft.mjs train`, exactly as a user would type it.
// About 9 minutes on 2 shared cores; the measured figures and the settings tried are in
// docs/alignment.md (worked example: SFT on GSM8K).
//
// usage: npm run example:sft -- [--questions N|all] [--max-tokens N] [--workers N]
//                               [--rebuild-base] [--eval-only]
//   --questions     held-out questions to answer (default: all the run held out)
//   --max-tokens    most tokens per answer (default 256; never past the model's blockSize)
//   --rebuild-base  pre-train runs/example-base again even if it exists
//   --eval-only     reuse runs/example-sft as it is: only the evaluation

import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadModel } from '../src/checkpoint/read.ts';
import { loadDataset } from '../src/data/dataset.ts';
import { createBackend } from '../src/kernels/select.ts';
import { generate } from '../src/model/generate.ts';
import type { EncodedChat } from '../src/tokenizer/chat.ts';
import type { Tokenizer } from '../src/tokenizer/index.ts';
import { hasCheckpoint } from '../src/train/run-dir.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const BASE = 'runs/example-base';
const SFT = 'runs/example-sft';

const { values } = parseArgs({
  options: {
    questions: { type: 'string', default: 'all' },
    'max-tokens': { type: 'string', default: '256' },
    workers: { type: 'string', default: String(Math.min(availableParallelism(), 2)) },
    'rebuild-base': { type: 'boolean', default: false },
    'eval-only': { type: 'boolean', default: false },
  },
});

function positiveInt(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`--${flag} must be a positive integer (got "${text}")`);
    process.exit(1);
  }
  return n;
}
const questions =
  values.questions === 'all' ? Infinity : positiveInt('questions', values.questions);
const maxTokens = positiveInt('max-tokens', values['max-tokens']);
const workers = positiveInt('workers', values.workers);

const seconds = (ms: number) => `${(ms / 1000).toFixed(0)} s`;
const timings: [string, number][] = [];

/** Runs `node bin/weft.mjs ARGS` in the repository root, output shown; exits if it fails. */
function weft(stage: string, args: string[]): void {
  console.log(`\n=== ${stage}: weft ${args.join(' ')}`);
  const start = performance.now();
  const child = spawnSync(process.execPath, [join(root, 'bin/weft.mjs'), ...args], {
    cwd: root,
    stdio: 'inherit',
  });
  if (child.status !== 0) {
    console.error(`${stage} failed (exit ${child.status ?? child.signal})`);
    process.exit(child.status ?? 1);
  }
  timings.push([stage, performance.now() - start]);
}

const started = performance.now();

// 1. the base model
if (values['rebuild-base'] || !hasCheckpoint(join(root, BASE))) {
  weft('pre-training', [
    'train',
    '--config',
    'configs/example-base.json',
    '--data',
    'data/tinyshakespeare.txt',
    '--out',
    BASE,
    '--workers',
    String(workers),
    '--overwrite',
  ]);
} else {
  console.log(`=== pre-training: ${BASE} exists; reusing it (--rebuild-base trains it again)`);
}

// 2. fine-tuning
if (!values['eval-only']) {
  weft('fine-tuning', [
    'train',
    '--config',
    'configs/example-sft.json',
    '--init',
    BASE,
    '--data',
    'data/gsm8k-train.jsonl',
    '--out',
    SFT,
    '--workers',
    String(workers),
    '--overwrite',
  ]);
}

// 3. evaluation on the records the fine-tuning run held out
const FORMAT = /^#### (-?[\d,]+(?:\.\d+)?)$/;

/** The number of an answer's last line when it is "#### N", else null. */
function finalNumber(text: string): number | null {
  const lines = text.trim().split('\n');
  const match = FORMAT.exec(lines[lines.length - 1].trim());
  return match ? Number(match[1].replace(/,/g, '') || NaN) : null;
}

interface HeldOut {
  prompt: number[];
  question: string;
  reference: number;
}

/** A held-out record as its prompt (up to the open assistant turn) and reference number. */
function heldOut(tokenizer: Tokenizer, { ids, trainMask }: EncodedChat): HeldOut {
  const first = trainMask.indexOf(1);
  const answer = ids.slice(first).filter((id) => id !== tokenizer.specials.imEnd);
  const reference = finalNumber(tokenizer.decode(answer));
  if (reference === null) throw new Error('a held-out record has no "#### N" answer line');
  const text = tokenizer.decode(ids.slice(0, first));
  const question = text.slice(text.indexOf('\n') + 1, text.lastIndexOf('<|im_end|>'));
  return { prompt: ids.slice(0, first), question, reference };
}

const dataset = loadDataset(join(root, SFT, 'data'));
if (dataset.records?.kind !== 'sft') throw new Error(`${SFT}/data is not an sft dataset`);
const trained = new Set(dataset.records.train.map((r) => r.ids.join(',')));
const held = dataset.records.val.filter((r) => !trained.has(r.ids.join(',')));
const overlap = dataset.records.val.length - held.length;
const items = held.slice(0, questions).map((r) => heldOut(dataset.tokenizer, r));
console.log(
  `\n=== evaluation: ${items.length} of the ${dataset.records.val.length} records ${SFT} held out` +
    (overlap ? ` (${overlap} dropped: also in the training split)` : '') +
    `; greedy, at most ${maxTokens} tokens each`,
);

interface Score {
  formatted: number;
  correct: number;
  closed: number;
  tokens: number;
  /** The answer to the first question. */
  sample: string;
  /** The first answer in the format, and its question's index. */
  formattedSample?: { index: number; text: string };
}

function evaluate(run: string): Score {
  const start = performance.now();
  const { model, tokenizer, config } = loadModel(join(root, run), createBackend());
  if (JSON.stringify(tokenizer.toJSON()) !== JSON.stringify(dataset.tokenizer.toJSON()))
    throw new Error(`${run} has another tokenizer than ${SFT}: run without --eval-only`);
  const { imEnd } = tokenizer.specials;
  const score: Score = { formatted: 0, correct: 0, closed: 0, tokens: 0, sample: '' };
  items.forEach((item, i) => {
    const budget = Math.max(1, Math.min(maxTokens, config.blockSize - item.prompt.length));
    const out = generate(model, item.prompt, {
      maxTokens: budget,
      temperature: 0,
      topK: 0,
      seed: 1,
      stopIds: [imEnd],
    });
    score.tokens += out.length;
    const closed = out[out.length - 1] === imEnd;
    const text = tokenizer.decode(closed ? out.slice(0, -1) : out);
    const number = finalNumber(text);
    if (closed) score.closed++;
    if (number !== null) score.formatted++;
    if (number !== null && !score.formattedSample) score.formattedSample = { index: i, text };
    if (number === item.reference) score.correct++;
    if (i === 0) score.sample = text;
    if ((i + 1) % 25 === 0) console.log(`${run}: ${i + 1}/${items.length} answered`);
  });
  timings.push([`evaluation of ${run}`, performance.now() - start]);
  return score;
}

const scores = [
  ['base', evaluate(BASE)],
  ['fine-tuned', evaluate(SFT)],
] as const;

if (items.length > 0) {
  console.log(
    `\nfirst held-out question:\n${items[0].question}\n(reference: ${items[0].reference})`,
  );
  for (const [run, s] of scores)
    console.log(
      `\n--- the ${run} model answers:\n${s.sample.trim().slice(0, 800) || '(only whitespace)'}`,
    );
  const first = scores[1][1].formattedSample;
  if (first && first.index > 0) {
    const item = items[first.index];
    console.log(
      `\nthe fine-tuned model's first answer in the format, to held-out question ${first.index + 1}:\n` +
        `${item.question}\n(reference: ${item.reference})\n--- answer:\n${first.text.trim()}`,
    );
  }
}

const pct = (k: number) => `${k}/${items.length} (${((100 * k) / items.length).toFixed(0)}%)`;
const rows = [
  ['model', 'ends in "#### N"', 'number right', 'closed its turn', 'tokens/answer'],
  ...scores.map(([run, s]) => [
    run,
    pct(s.formatted),
    pct(s.correct),
    pct(s.closed),
    (s.tokens / Math.max(1, items.length)).toFixed(0),
  ]),
];
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
const line = (r: string[]) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ');
console.log(`\nheld-out GSM8K questions: ${items.length}`);
for (const r of rows) console.log(line(r).trimEnd());
console.log('');
for (const [stage, ms] of timings) console.log(`${stage}: ${seconds(ms)}`);
console.log(`total: ${seconds(performance.now() - started)}`);
