// The weft command: `info` on the presets, and one-line errors for user mistakes.

import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

describe('weft info', () => {
  it('prints GPT-2 124M parameter count', () => {
    const r = runCli(['info', '--config', 'configs/gpt2-124m.json']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('parameters  124,439,808');
  });

  it.each([
    ['tiny', 'vocabSize=303', '36,192'],
    ['shakespeare', 'vocabSize=1027', '941,184'],
  ])(
    'sizes preset %s from its tokenizer (vocabSize 0), as training would',
    (name, vocab, params) => {
      // issue 12, case 8: these asked for --set vocabSize=N
      const r = runCli(['info', '--config', name]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`${vocab} \\(tokenizer bpe:\\d+'s, at most`));
      expect(r.stdout).toContain(`parameters  ${params}`);
    },
  );

  it('prints the pipeline stages of --pipeline P: blocks, memory, compute share and bubble', () => {
    const r = runCli(['info', '--config', 'gpt2-124m', '--pipeline', '4', '--set', 'batchSize=8']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('pipeline    4 stage(s) x 1 replica(s), 1f1b, 8 micro-batches');
    expect(r.stdout).toMatch(/stage 0 {3}blocks 0-3 \+ embeddings: 67,735,296 parameters/);
    expect(r.stdout).toMatch(/stage 3 {3}block 11 \+ head: .* 1 held/);
    expect(r.stdout).toContain('bubble      (P-1)/(m+P-1) = 27.3%');
  });

  it.each([
    [
      ['info', '--config', 'bench-m', '--pipeline', '3', '--workers', '4'],
      /4 workers do not form pipelines of 3 stages; use a multiple of 3 \(3, 6, 9, \.\.\.\)/,
    ],
    [
      ['info', '--config', 'bench-m', '--pipeline', '2', '--schedule', 'zigzag'],
      /--schedule zigzag is not one of 1f1b, gpipe/,
    ],
    [
      ['info', '--config', 'bench-m', '--pipeline', '7'],
      /P=7 must be an integer from 1 to nLayer=6/,
    ],
    [
      ['info', '--config', 'configs/bench-s.json', '--set', 'nHead=3'],
      /nEmbd=256 is not divisible by nHead=3/,
    ],
    [['info', '--config', 'missing.json'], /config file missing.json cannot be read/],
    [
      ['info', '--config', 'configs/bench-s.json', '--set', 'depth=3'],
      /unknown config key "depth" in --set; valid keys: name, nLayer/,
    ],
    [
      ['info', '--config', 'configs/bench-s.json', '--set', 'nLayer=four'],
      /--set nLayer=four: "four" is not a number/,
    ],
    [['info'], /required option '--config <file>' not specified/],
  ])('%j fails with one line', (args, message) => {
    const r = runCli(args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout, 'checked before anything is printed').toBe('');
  });
});
