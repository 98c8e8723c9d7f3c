// Checkpoints: byte-stable files, verification that names the damaged file, pruning and
// cleanup, and interop with Hugging Face GPT-2 directories (round trip, and PyTorch computing the
// same logits from the exported weights).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { CheckpointState } from '../../src/checkpoint/format.ts';
import { exportHf, importHf } from '../../src/checkpoint/hf.ts';
import { loadCheckpoint, loadModel, resolveCheckpoint } from '../../src/checkpoint/read.ts';
import { readSafetensors } from '../../src/checkpoint/safetensors.ts';
import {
  cleanCheckpointTemps,
  listCheckpoints,
  writeCheckpoint,
} from '../../src/checkpoint/write.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { sequenceReward } from '../../src/train/sequence-scores.ts';
import { BpeTokenizer } from '../../src/tokenizer/bpe.ts';
import { ROOT } from '../helpers/cli.ts';
import { expectWeftError } from '../helpers/errors.ts';
import { editManifest } from '../helpers/manifest.ts';
import { maxAbsDiff } from '../helpers/fixtures.ts';
import { tempDir } from '../helpers/tmp.ts';

const config = {
  nLayer: 2,
  nHead: 2,
  nEmbd: 16,
  blockSize: 16,
  vocabSize: 259,
  seqLen: 16,
  name: 'ck',
};

function state(step: number, seed = 1): CheckpointState {
  const model = GPT2.init(config, seed);
  const m = model.params.map((x) => x * 0.1);
  const v = model.params.map((x) => x * x);
  return {
    step,
    tokensSeen: step * 64,
    config,
    tokenizer: BpeTokenizer.bytes().toJSON(),
    adamSteps: step,
    loader: { step, seed: 1, seqLen: 16, items: 100 },
    rng: { seed: 1 },
    data: { path: '/data', manifestSha256: 'abc' },
    metrics: { lastStep: { step, loss: 1.5, lr: 0.1, gradNorm: 2 } },
    params: model.params,
    m,
    v,
  };
}

const files = (dir: string) =>
  Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f))]));

describe('checkpoint files', () => {
  it('round-trips the whole state and resolves a run directory to its latest checkpoint', async () => {
    const run = tempDir();
    const saved = state(5);
    const dir = await writeCheckpoint(run, saved);
    expect(dir).toBe(join(run, 'checkpoints', 'step-00000005'));
    expect(readFileSync(join(run, 'checkpoints', 'latest'), 'utf8')).toBe('step-00000005\n');
    expect(resolveCheckpoint(run)).toBe(dir);
    expect(resolveCheckpoint(dir)).toBe(dir);
    const back = loadCheckpoint(run);
    for (const key of ['params', 'm', 'v'] as const)
      expect(Buffer.from(back[key].buffer).equals(Buffer.from(saved[key].buffer))).toBe(true);
    expect(back).toMatchObject({ step: 5, adamSteps: 5, tokensSeen: 320, loader: saved.loader });
    const optimizer = readSafetensors(readFileSync(join(dir, 'optimizer.safetensors')));
    expect(optimizer.metadata).toEqual({ format: 'weft-adamw', steps: '5' });
    expect(optimizer.tensors.get('m/h.1.mlp.c_fc.weight')?.shape).toEqual([16, 64]);
    expect(loadModel(run).tokenizer.name).toBe('byte');
  });

  it('writes byte-equal files for equal state (no timestamps)', async () => {
    const a = await writeCheckpoint(tempDir(), state(3));
    await new Promise((r) => setTimeout(r, 1100));
    const b = await writeCheckpoint(tempDir(), state(3));
    expect(files(a)).toEqual(files(b));
  });

  it('keeps the newest keepLast checkpoints and points latest at the newest', async () => {
    const run = tempDir();
    for (const step of [1, 2, 3, 4]) await writeCheckpoint(run, state(step), 2);
    expect(listCheckpoints(join(run, 'checkpoints'))).toEqual(['step-00000003', 'step-00000004']);
    expect(resolveCheckpoint(run)).toBe(join(run, 'checkpoints', 'step-00000004'));
  });

  it('removes what an interrupted save left behind', async () => {
    const run = tempDir();
    await writeCheckpoint(run, state(1));
    mkdirSync(join(run, 'checkpoints', '.tmp-step-00000002-123'));
    writeFileSync(join(run, 'checkpoints', 'latest.tmp'), 'step-00000002\n');
    expect(cleanCheckpointTemps(run).sort()).toEqual(['.tmp-step-00000002-123', 'latest.tmp']);
    expect(readdirSync(join(run, 'checkpoints')).sort()).toEqual(['latest', 'step-00000001']);
  });
});

describe('damaged checkpoints are refused with one line naming the file, and left as they are', () => {
  const cases: [string, (dir: string) => void, RegExp][] = [
    [
      'a flipped byte',
      (dir) => {
        const bytes = readFileSync(join(dir, 'model.safetensors'));
        bytes[bytes.length - 3] ^= 0x10;
        writeFileSync(join(dir, 'model.safetensors'), bytes);
      },
      /step-00000007\/model\.safetensors does not match its sha256 in the manifest \(the file is damaged\)/,
    ],
    [
      'a truncated file',
      (dir) =>
        writeFileSync(
          join(dir, 'optimizer.safetensors'),
          readFileSync(join(dir, 'optimizer.safetensors')).subarray(0, 100),
        ),
      /optimizer\.safetensors is 100 bytes but the manifest says \d+ \(truncated or replaced\)/,
    ],
    [
      'a missing file',
      (dir) => rmSync(join(dir, 'model.safetensors')),
      /step-00000007\/model\.safetensors is missing/,
    ],
    [
      'a manifest from a newer format version',
      (dir) => editManifest(dir, (m) => (m.version = 2)),
      /manifest\.json has format version 2, newer than this weft reads \(1\); upgrade weft/,
    ],
    [
      'a manifest without the dataset it was trained on',
      (dir) => editManifest(dir, (m) => delete m.data),
      /step-00000007\/manifest\.json lacks "data" \(an object with the strings path and manifestSha256\)/,
    ],
    [
      'a manifest listing a file outside its directory',
      (dir) =>
        editManifest(dir, (m) => {
          const files = m.files as Record<string, unknown>;
          files['../../secret'] = { bytes: 1, sha256: '0'.repeat(64) };
        }),
      /manifest\.json lists no valid files \(each a plain file name with its bytes and sha256\)/,
    ],
    [
      'a latest naming a missing checkpoint',
      (dir) => rmSync(dir, { recursive: true }),
      /latest names step-00000007, but .* holds no manifest\.json/,
    ],
  ];
  it.each(cases)('%s', async (_, damage, message) => {
    const run = tempDir();
    const dir = await writeCheckpoint(run, state(7));
    damage(dir);
    const before = existsSync(dir) ? files(dir) : {};
    expectWeftError(() => loadCheckpoint(run), 'WEFT_E_FORMAT', message);
    expect(existsSync(dir) ? files(dir) : {}).toEqual(before);
  });
});

/** A python3 that can import torch, or null. */
function torchPython(): string | null {
  for (const python of ['python3', '/usr/bin/python3']) {
    if (spawnSync(python, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return python;
  }
  return null;
}
const python = torchPython();
if (!python)
  console.warn(
    'PyTorch not found (apt-get install python3-torch): skipping the PyTorch logits check of exported weights',
  );

describe('Hugging Face interop', () => {
  it('export then import round-trips the weights to identical bytes', async () => {
    const run = tempDir();
    const dir = await writeCheckpoint(run, state(9));
    const hf = exportHf(run, join(tempDir(), 'hf'));
    expect(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8'))).toMatchObject({
      model_type: 'gpt2',
      n_layer: 2,
      n_head: 2,
      n_embd: 16,
      n_positions: 16,
      vocab_size: 259,
    });
    const back = await importHf(hf, join(tempDir(), 'imported'));
    expect(
      readFileSync(join(back, 'model.safetensors')).equals(
        readFileSync(join(dir, 'model.safetensors')),
      ),
    ).toBe(true);
    expect(loadCheckpoint(back).step).toBe(0);
  });

  it('refuses a non-GPT-2 directory, naming what is wrong', () => {
    const hf = tempDir();
    writeFileSync(join(hf, 'config.json'), JSON.stringify({ model_type: 'llama', n_layer: 1 }));
    return expect(importHf(hf, join(tempDir(), 'x'))).rejects.toThrow(
      /describes a "llama" model; weft imports gpt2/,
    );
  });

  it.skipIf(!python)(
    'PyTorch computes the same logits from the exported weights (within 1e-5)',
    async () => {
      const run = tempDir();
      await writeCheckpoint(run, state(4, 11));
      const hf = exportHf(run, join(tempDir(), 'hf'));
      const ids = [5, 17, 200, 3, 99, 258, 0, 42, 42, 7];
      const out = join(tempDir(), 'logits.f32');
      const r = spawnSync(
        python as string,
        [join(ROOT, 'scripts/gpt2_reference.py'), hf, JSON.stringify(ids), out],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      const theirs = new Float32Array(new Uint8Array(readFileSync(out)).buffer);
      const ours = loadModel(run).model.forward(Int32Array.from(ids), 1, ids.length).logits;
      expect(theirs.length).toBe(ours.length);
      expect(maxAbsDiff(ours, theirs)).toBeLessThanOrEqual(1e-5);
    },
  );

  it('a reward model exports as GPT2ForSequenceClassification and imports back as one', async () => {
    const run = tempDir();
    const reward = { ...config, objective: 'reward' };
    const model = GPT2.init(reward, 3);
    await writeCheckpoint(run, {
      ...state(2, 3),
      config: reward,
      params: model.params,
      m: model.params,
      v: model.params,
    });
    const hf = exportHf(run, join(tempDir(), 'hf'));
    const hfConfig = JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(hfConfig.architectures).toEqual(['GPT2ForSequenceClassification']);
    expect(hfConfig.num_labels).toBe(1);
    const st = readSafetensors(readFileSync(join(hf, 'model.safetensors')));
    expect(st.tensors.get('score.weight')?.shape).toEqual([1, config.nEmbd]);
    expect(st.tensors.has('transformer.score.weight')).toBe(false);
    const back = loadCheckpoint(await importHf(hf, join(tempDir(), 'imported')));
    expect(back.config.objective).toBe('reward');
    expect(Buffer.from(back.params.buffer).equals(Buffer.from(model.params.buffer))).toBe(true);
    if (!python) return console.log('PyTorch not found: the reward is not checked against it');
    const ids = [5, 17, 200, 3, 99, 258, 0, 42];
    const out = join(tempDir(), 'reward.f32');
    const r = spawnSync(
      python,
      [join(ROOT, 'scripts/gpt2_reference.py'), hf, JSON.stringify(ids), out],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status, r.stderr).toBe(0);
    const theirs = new Float32Array(new Uint8Array(readFileSync(out)).buffer);
    const ours = sequenceReward(
      loadModel(run).model,
      Int32Array.from(ids),
      ids.length,
      ids.length,
      model.p.score,
    );
    expect(theirs).toHaveLength(1);
    expect(Math.abs(theirs[0] - ours)).toBeLessThanOrEqual(1e-5);
  });
});
