// Example: DPO (Direct Preference Optimization, TRL's sigmoid loss) on Anthropic's hh-rlhf, end
// to end, through the CLI (`node bin/weft.mjs`), with the wall time of every stage:
//
//   1. text    the chosen transcripts of data/hh-rlhf-helpful-rejection-sampled-test-1193.jsonl
//              written as plain text (runs/example-dpo/base-text.txt). That file is never used
//              for preference training or evaluation, so no held-out pair is pre-trained on.
//   2. base    pre-trains a small GPT-2 on that text (configs/example-dpo-base.json: 1.1M
//              parameters, context 256, a 2,048-token BPE learned from the text).
//   3. dpo     DPO from the base (--init; the base is also the frozen reference) on the pairs of
//              data/hh-rlhf-helpful-base-test-rest.jsonl (configs/example-dpo.json: beta 0.1,
//              8 pairs a step, lr 1e-4, one epoch). The last 20% of the usable pairs are held
//              out; at the end the run scores them with the policy's implicit reward
//              beta * (log pi - log ref) and logs "held-out preference accuracy ...".
//   4. train   `weft eval --reference` on as many training pairs as there are held-out ones,
//              to compare train and held-out accuracy.
//
// It prints the held-out accuracy, margin and loss, the pairs held out and skipped, two
// baselines (chance: the reference's implicit reward is 0 for every pair; "the longer reply
// wins"), the time the workers spent waiting for the coordinator's reference log-probs, and the
// wall time per stage; runs/example-dpo/summary.json holds the same figures. Exits 1 if the
// held-out accuracy is not above 0.5.
//
// usage: npm run example:dpo -- [--workers 2] [--out runs/example-dpo]

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { pairFits } from '../src/data/pairs.ts';
import type { PreferencePair } from '../src/data/preference.ts';
import { encodePreference, preferenceText } from '../src/data/preference.ts';
import { loadTokenizer } from '../src/tokenizer/index.ts';

const root = join(dirname(new URL(import.meta.url).pathname), '..');
const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: String(Math.min(2, availableParallelism())) },
    out: { type: 'string', default: 'runs/example-dpo' },
  },
});
// every path below is relative to the repository root
process.chdir(root);
const workers = values.workers;
const out = values.out;
const BASE_TEXT_SOURCE = 'data/hh-rlhf-helpful-rejection-sampled-test-1193.jsonl';
const PAIRS = 'data/hh-rlhf-helpful-base-test-rest.jsonl';
const baseConfig = 'configs/example-dpo-base.json';
const dpoConfig = 'configs/example-dpo.json';
const paths = {
  text: join(out, 'base-text.txt'),
  base: join(out, 'base'),
  dpo: join(out, 'dpo'),
  trainPairs: join(out, 'train-pairs-sample.jsonl'),
  summary: join(out, 'summary.json'),
};

/** Seconds since `start` (performance.now()), to 0.1 s. */
const since = (start: number) => Math.round((performance.now() - start) / 100) / 10;
const lines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '');

/**
 * Runs `node bin/weft.mjs ...args`, echoing its output prefixed with `tag`; resolves with its
 * stdout and the time (ms since start) each output line appeared.
 */
function weftRun(
  tag: string,
  args: string[],
): Promise<{ stdout: string; seen: { at: number; line: string }[] }> {
  const start = performance.now();
  console.log(`\n[${tag}] node bin/weft.mjs ${args.join(' ')}`);
  const child = spawn(process.execPath, ['bin/weft.mjs', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const seen: { at: number; line: string }[] = [];
  let stdout = '';
  const follow = (stream: NodeJS.ReadableStream, isStdout: boolean) =>
    createInterface({ input: stream }).on('line', (line) => {
      seen.push({ at: performance.now() - start, line });
      if (isStdout) stdout += `${line}\n`;
      console.log(`[${tag}] ${line}`);
    });
  follow(child.stdout, true);
  follow(child.stderr, false);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve({ stdout, seen })
        : reject(new Error(`weft ${args[0]} (${tag}) exited with code ${code}`)),
    );
  });
}

interface PairEval {
  pairs: number;
  accuracy: number;
  margin: number;
  loss: number;
}

const stages: Record<string, number> = {};
const total = performance.now();
mkdirSync(out, { recursive: true });

// 1. pre-training text: the chosen transcripts of the file DPO never sees
let t = performance.now();
const transcripts = lines(BASE_TEXT_SOURCE).map(
  (l) => (JSON.parse(l) as { chosen: string }).chosen,
);
writeFileSync(paths.text, `${transcripts.map((c) => c.trim()).join('\n\n')}\n`);
console.log(
  `[text] ${transcripts.length} chosen transcripts of ${BASE_TEXT_SOURCE} -> ${paths.text}`,
);
stages.text = since(t);

// 2. the base model (and the DPO reference)
t = performance.now();
await weftRun('base', [
  'train',
  '--config',
  baseConfig,
  '--data',
  paths.text,
  '--out',
  paths.base,
  '--workers',
  workers,
  '--overwrite',
]);
stages.base = since(t);

// 3. DPO from the base; the run evaluates its held-out pairs at the end
t = performance.now();
const dpo = await weftRun('dpo', [
  'train',
  '--config',
  dpoConfig,
  '--init',
  paths.base,
  '--data',
  PAIRS,
  '--out',
  paths.dpo,
  '--workers',
  workers,
  '--overwrite',
]);
stages.dpo = since(t);
const stepLines = dpo.seen.filter((s) => /^step\s+\d+\//.test(s.line));
const heldLine = dpo.seen.find((s) => s.line.startsWith('held-out preference accuracy'));
// from the last step's progress line to the held-out line: the final evaluation (policy and
// reference, one pair at a time, on the coordinator)
const heldOutEvalSeconds =
  heldLine && stepLines.length
    ? Math.round((heldLine.at - stepLines[stepLines.length - 1].at) / 100) / 10
    : null;

const metrics = lines(join(paths.dpo, 'metrics.jsonl')).map(
  (l) => JSON.parse(l) as Record<string, number | string>,
);
const evalRecord = metrics.find((m) => m.type === 'eval') as unknown as PairEval | undefined;
if (!evalRecord) throw new Error(`no held-out evaluation in ${paths.dpo}/metrics.jsonl`);
const { pairs, accuracy, margin, loss } = evalRecord;
const heldOut: PairEval = { pairs, accuracy, margin, loss };
const workerRows = metrics.filter((m) => m.type === 'worker');
const meanOf = (rows: Record<string, number | string>[], key: string) =>
  rows.reduce((s, r) => s + (r[key] as number), 0) / Math.max(1, rows.length);
// workers wait for the coordinator, which builds each step's pairs and computes the reference
// log-probs of pairs not seen before (the whole first epoch)
const steps = metrics.filter((m) => m.type === 'step');
const referenceWaitSeconds = Math.round((meanOf(workerRows, 'waitMs') * steps.length) / 100) / 10;
// TRL's rewards/accuracies of the last fifth of the steps: in a one-epoch run each batch's pairs
// are scored before the policy has trained on them
const lastSteps = steps.slice(-Math.max(1, Math.floor(steps.length / 5)));
const onlineAccuracy = meanOf(lastSteps, 'rewards/accuracies');

// what the DPO run kept, skipped and held out (its prepared dataset)
const manifest = JSON.parse(readFileSync(join(paths.dpo, 'data/dataset.json'), 'utf8')) as {
  seqLen: number;
  valFraction: number;
  records: {
    records: number;
    kept: number;
    skipped: Record<string, number>;
    train: number;
    val: number;
  };
};
const { seqLen, valFraction, records } = manifest;

// baseline: the longer reply, as the model sees it (cut to seqLen), wins; a tie counts half
const heldPairs = lines(join(paths.dpo, 'data/val.jsonl')).map(
  (l) => JSON.parse(l) as PreferencePair,
);
let longer = 0;
for (const p of heldPairs) {
  const room = seqLen - p.prompt.length;
  const [c, r] = [Math.min(room, p.chosen.length), Math.min(room, p.rejected.length)];
  longer += c > r ? 1 : c === r ? 0.5 : 0;
}
const lengthBaseline = longer / heldPairs.length;

// 4. training pairs: the split weft made (usable records in file order, the last valFraction
// held out), rebuilt with the model's tokenizer; as many as were held out, from the start
t = performance.now();
const tokenizer = loadTokenizer(join(paths.base, 'tokenizer.json'));
const usable = lines(PAIRS).filter((line) => {
  try {
    const [text] = preferenceText(JSON.parse(line));
    return pairFits(encodePreference(tokenizer, text), seqLen);
  } catch {
    return false;
  }
});
const held = Math.max(1, Math.round(usable.length * valFraction));
if (usable.length - held !== records.train || held !== records.val)
  throw new Error(
    `rebuilt split ${usable.length - held} train / ${held} held out differs from the run's ${records.train} / ${records.val}`,
  );
writeFileSync(paths.trainPairs, `${usable.slice(0, records.val).join('\n')}\n`);
const trainEval = JSON.parse(
  (
    await weftRun('train-eval', [
      'eval',
      '--checkpoint',
      paths.dpo,
      '--data',
      paths.trainPairs,
      '--reference',
      paths.base,
      '--json',
    ])
  ).stdout,
) as PairEval;
stages.trainEval = since(t);
stages.total = since(total);

const skipped = Object.values(records.skipped).reduce((a, b) => a + b, 0);
const se = Math.sqrt((heldOut.accuracy * (1 - heldOut.accuracy)) / heldOut.pairs);
const summary = {
  pairs: {
    records: records.records,
    usable: records.train + records.val,
    skipped: records.skipped,
    train: records.train,
    heldOut: records.val,
    seqLen,
  },
  heldOut: { ...heldOut, standardError: se },
  baselines: { reference: 0.5, longerReply: lengthBaseline },
  trainSample: trainEval,
  onlineAccuracyLastFifth: { steps: lastSteps.length, accuracy: onlineAccuracy },
  seconds: { ...stages, heldOutEval: heldOutEvalSeconds, referenceWait: referenceWaitSeconds },
};
writeFileSync(paths.summary, `${JSON.stringify(summary, null, 2)}\n`);

const f = (x: number, d = 3) => x.toFixed(d);
console.log(`
== DPO on hh-rlhf helpful-base (${paths.summary}) ==
pairs: ${records.records} records, ${records.train + records.val} usable (${skipped} skipped: ${Object.entries(
  records.skipped,
)
  .map(([why, n]) => `${n} ${why}`)
  .join(', ')}); ${records.train} train / ${records.val} held out; T=${seqLen}
held-out accuracy  ${f(heldOut.accuracy)} +- ${f(se)} over ${heldOut.pairs} pairs (margin ${f(heldOut.margin, 4)}, loss ${f(heldOut.loss, 4)})
baselines          reference (implicit reward 0): 0.5 | longer reply wins: ${f(lengthBaseline)}
online accuracy    ${f(onlineAccuracy)} (rewards/accuracies of the last ${lastSteps.length} steps, on pairs not yet trained on)
train accuracy     ${f(trainEval.accuracy)} over the first ${trainEval.pairs} training pairs (margin ${f(trainEval.margin, 4)}, loss ${f(trainEval.loss, 4)})
wall time          text ${f(stages.text, 1)} s | base ${f(stages.base, 1)} s | dpo ${f(stages.dpo, 1)} s (held-out evaluation ${heldOutEvalSeconds ?? '?'} s; workers waited ${referenceWaitSeconds} s for the coordinator's reference log-probs) | train eval ${f(stages.trainEval, 1)} s | total ${f(stages.total, 1)} s`);
if (!(heldOut.accuracy > 0.5)) {
  console.error('the held-out preference accuracy is not above 0.5');
  process.exit(1);
}
