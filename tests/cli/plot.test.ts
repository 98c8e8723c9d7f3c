// `weft plot` as a user runs it, over two real tiny training runs: an SVG naming both runs with a
// line each, a PNG of exactly --width x --height, and one-line errors for an unknown metric, a
// missing run directory and an --out that is neither .svg nor .png.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectCliError, runCli } from '../helpers/cli.ts';
import { pngSize } from '../helpers/png.ts';
import { tinyDataset, trainTiny } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const runA = join(dir, 'fast');
const runB = join(dir, 'slow');

beforeAll(async () => {
  const ds = tinyDataset(dir, 20_000);
  const fast = { steps: 12, evalEvery: 6, evalWindows: 2 };
  await trainTiny(ds, runA, { ...fast, lr: 3e-3 });
  await trainTiny(ds, runB, { ...fast, lr: 1e-3 });
}, 60_000);

describe('weft plot', () => {
  it('draws two runs into an SVG', () => {
    const out = join(dir, 'loss.svg');
    const r = runCli(['plot', runA, runB, '--out', out]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*loss\.svg: 2 series, 24 points$/m);
    const svg = readFileSync(out, 'utf8');
    expect(svg).toMatch(/^<svg[^>]* width="800" height="500"/);
    expect(svg).toContain('>fast</text>');
    expect(svg).toContain('>slow</text>');
    // a line per run: paths drawn with the series' stroke width, through its 12 points
    const lines = [...svg.matchAll(/<path d="([^"]*)"[^>]* stroke-width="1.5"/g)];
    expect(lines).toHaveLength(2);
    for (const [, d] of lines) expect(d.split('L')).toHaveLength(12);
  });

  it('draws a PNG of the asked size, of any metric', () => {
    const out = join(dir, 'val.png');
    const r = runCli([
      ...['plot', runA, runB, '--out', out, '--metric', 'val,bpb'],
      ...['--width', '640', '--height', '400'],
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/: 4 series, 8 points$/m);
    expect(pngSize(readFileSync(out))).toEqual({ width: 640, height: 400 });
  });

  it('refuses an unknown metric, a missing run directory and a wrong extension', () => {
    expectCliError(
      runCli(['plot', runA, '--out', join(dir, 'x.svg'), '--metric', 'acc']),
      /^weft: unknown metric "acc"; one of loss, val, bpb, .*tokensPerSec/,
    );
    expectCliError(
      runCli(['plot', runA, join(dir, 'nope'), '--out', join(dir, 'x.svg')]),
      /^weft: run directory .*nope does not exist/,
    );
    expectCliError(
      runCli(['plot', runA, '--out', join(dir, 'x.jpg')]),
      /^weft: --out .*x\.jpg: a chart is written as \.svg or \.png/,
    );
    expectCliError(
      runCli(['plot', runA, '--out', join(dir, 'x.png'), '--width', '20']),
      /^weft: --width 20 is not an integer >= 100/,
    );
    expect(existsSync(join(dir, 'x.svg'))).toBe(false);
  });
});
