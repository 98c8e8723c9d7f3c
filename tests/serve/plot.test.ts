// Charts of runs' metrics (serve/plot.ts, serve/plot-data.ts) on synthetic metrics.jsonl files:
// the SVG names every run and draws a line per series, a PNG has exactly the asked size, each
// metric reads its records, mistakes are named, and the pixels match a committed golden image
// (tests/fixtures/plot/golden.png) within a small tolerance. After a deliberate change to the
// chart's look (or to echarts, resvg or the font), regenerate the golden image with
//   WEFT_UPDATE_GOLDEN=1 npx vitest run tests/serve/plot.test.ts
// and look at it before committing it.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCurves } from '../../src/serve/plot-data.ts';
import type { ChartSpec } from '../../src/serve/plot.ts';
import { PALETTE, plotRuns, renderChart, writeLossChart } from '../../src/serve/plot.ts';
import { WeftError } from '../../src/util/errors.ts';
import { ROOT } from '../helpers/cli.ts';
import type { PngImage } from '../helpers/png.ts';
import { decodePng, pixelDifference, pngSize } from '../helpers/png.ts';
import { tempDir } from '../helpers/tmp.ts';

const GOLDEN = join(ROOT, 'tests/fixtures/plot/golden.png');
/**
 * The fraction of pixels allowed to differ from the golden image (anti-aliasing in another resvg
 * build; the same build gives 0). A chart's lines cover about 1% of its pixels, so one curve
 * changed is several times this.
 */
const TOLERANCE = 0.001;

const dir = tempDir();

/** A run directory whose metrics.jsonl has `steps` step records and an eval every 25 steps. */
function syntheticRun(name: string, { steps = 100, scale = 1, extra = false } = {}): string {
  const run = join(dir, name);
  mkdirSync(run, { recursive: true });
  const lines: object[] = [];
  for (let step = 1; step <= steps; step++) {
    const loss = 2 + 3.5 * scale * Math.exp(-step / 30) + 0.08 * Math.sin(step * 1.7);
    const lr = 3e-3 * Math.min(1, step / 10);
    lines.push({
      type: 'step',
      step,
      loss,
      lr,
      gradNorm: 1 + 4 * Math.exp(-step / 20),
      tokensPerSec: 5000 + 10 * step,
      elapsedMs: 50 * step,
      ...(extra ? { 'rewards/margins': step / 100 } : {}),
    });
    lines.push({ type: 'worker', step, worker: 'w0', rank: 0, computeMs: 40, commMs: 1 });
    if (step % 25 === 0) {
      const val = loss + 0.15;
      lines.push({ type: 'eval', step, split: 'val', loss: val, ppl: Math.exp(val), bpb: val / 2 });
    }
  }
  writeFileSync(join(run, 'metrics.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  return run;
}

const runA = syntheticRun('lr-3e-3');
const runB = syntheticRun('lr-1e-3', { scale: 1.3, extra: true });

/** The fixed two-run chart the golden image shows. */
function goldenSpec(): ChartSpec {
  const { title, series } = runCurves([runA, runB], ['loss']);
  return { title, series, width: 640, height: 400 };
}

/** How many pixels of `image` have the color `hex` (#rrggbb) exactly. */
function pixelsOf(image: PngImage, hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  let n = 0;
  for (let i = 0; i < image.rgba.length; i += 4)
    if (image.rgba[i] === r && image.rgba[i + 1] === g && image.rgba[i + 2] === b) n++;
  return n;
}

/** The WeftError `fn` throws (failing the test when it throws none or another error). */
function weftError(fn: () => unknown): WeftError {
  try {
    fn();
  } catch (err) {
    if (err instanceof WeftError) return err;
    throw err;
  }
  throw new Error('expected a WeftError');
}

describe('plot: SVG and PNG', () => {
  it('draws an SVG chart naming both runs, with a line per run', () => {
    const out = join(dir, 'two.svg');
    const series = plotRuns([runA, runB], { metrics: ['loss'], out });
    expect(series.map((s) => s.name)).toEqual(['lr-3e-3', 'lr-1e-3']);
    expect(series[0].points).toHaveLength(100);
    const svg = readFileSync(out, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toMatch(/^<svg[^>]* width="800" height="500"/);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('>lr-3e-3</text>');
    expect(svg).toContain('>lr-1e-3</text>');
    expect(svg).toContain('font-family:DejaVu Sans');
    // each series' line: a path in its color through (nearly) all its points
    const lines = [...svg.matchAll(/<path d="([^"]*)"[^>]* stroke="([^"]*)" stroke-width="1.5"/g)];
    for (const color of PALETTE.slice(0, 2)) {
      const own = lines.filter((m) => m[2] === color);
      expect(own).toHaveLength(1);
      expect(own[0][1].split('L').length).toBeGreaterThan(50);
    }
  });

  it('writes a PNG of exactly the asked size', () => {
    const out = join(dir, 'sized', 'two.png');
    plotRuns([runA, runB], { metrics: ['loss'], out, width: 640, height: 400 });
    expect(pngSize(readFileSync(out))).toEqual({ width: 640, height: 400 });
    plotRuns([runA], { metrics: ['lr'], out, width: 333, height: 777 });
    expect(pngSize(readFileSync(out))).toEqual({ width: 333, height: 777 });
  });

  it('matches the golden image, and a different chart does not', () => {
    const png = renderChart(goldenSpec(), 'png');
    if (process.env.WEFT_UPDATE_GOLDEN === '1' || !existsSync(GOLDEN)) {
      if (process.env.WEFT_UPDATE_GOLDEN !== '1')
        throw new Error(`${GOLDEN} is missing: run with WEFT_UPDATE_GOLDEN=1 to write it`);
      mkdirSync(dirname(GOLDEN), { recursive: true });
      writeFileSync(GOLDEN, png);
    }
    const golden = decodePng(readFileSync(GOLDEN));
    // decoded right: the lines' colors are there, pixel for pixel
    for (const color of PALETTE.slice(0, 2)) expect(pixelsOf(golden, color)).toBeGreaterThan(200);
    expect(pixelDifference(decodePng(png), golden)).toBeLessThan(TOLERANCE);

    // another curve in the same frame: the comparison sees it
    const other = goldenSpec();
    other.series[1] = runCurves([runB], ['val']).series[0];
    const changed = decodePng(renderChart(other, 'png'));
    expect(pixelDifference(changed, golden)).toBeGreaterThan(TOLERANCE);
    // a stretch of one curve moved a little (the axes unchanged): seen too
    const moved = goldenSpec();
    moved.series[1].points = moved.series[1].points.map(([x, y]) => [
      x,
      x >= 20 && x <= 60 ? y - 0.1 : y,
    ]);
    expect(pixelDifference(decodePng(renderChart(moved, 'png')), golden)).toBeGreaterThan(
      TOLERANCE,
    );
  });
});

describe('plot: metrics', () => {
  it('reads each metric from its records', () => {
    const val = runCurves([runA], ['val']).series[0].points;
    expect(val.map((p) => p[0])).toEqual([25, 50, 75, 100]);
    const bpb = runCurves([runA], ['bpb']).series[0].points;
    expect(bpb[0][1]).toBeCloseTo(val[0][1] / 2, 12);
    expect(runCurves([runA], ['lr']).series[0].points[99]).toEqual([100, 3e-3]);
    expect(runCurves([runB], ['rewards/margins']).series[0].points[0]).toEqual([1, 0.01]);
    for (const m of ['gradNorm', 'tokensPerSec', 'ppl', 'elapsedMs'])
      expect(runCurves([runA, runB], [m]).series).toHaveLength(2);
  });

  it('names series by run, by metric, or both', () => {
    expect(runCurves([runA], ['loss', 'val']).series.map((s) => s.name)).toEqual(['loss', 'val']);
    expect(runCurves([runA, runB], ['loss', 'val']).series.map((s) => s.name)).toEqual([
      'lr-3e-3 loss',
      'lr-3e-3 val',
      'lr-1e-3 loss',
      'lr-1e-3 val',
    ]);
    expect(runCurves([runA], ['val']).title).toBe('lr-3e-3: validation loss (nats)');
  });

  it('writes loss.svg with the training and validation loss', () => {
    const path = writeLossChart(runA);
    expect(path).toBe(join(runA, 'loss.svg'));
    const svg = readFileSync(join(runA, 'loss.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('>train</text>');
    expect(svg).toContain('>val</text>');
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'metrics.jsonl'), '');
    expect(writeLossChart(empty)).toBeNull();
  });
});

describe('plot: mistakes', () => {
  it('an unknown metric names it and the known ones', () => {
    const err = weftError(() => runCurves([runA], ['accuracy']));
    expect(err.message).toMatch(/^unknown metric "accuracy"; one of loss, val, bpb/);
    expect(weftError(() => runCurves([runB], ['nope'])).message).toContain('rewards/margins');
  });

  it('a missing run directory, or one without metrics.jsonl', () => {
    expect(weftError(() => runCurves([join(dir, 'nope')], ['loss'])).message).toMatch(
      /run directory .*nope does not exist/,
    );
    mkdirSync(join(dir, 'bare'));
    expect(weftError(() => runCurves([join(dir, 'bare')], ['loss'])).message).toMatch(
      /bare has no metrics\.jsonl/,
    );
  });

  it('a run without records of the metric', () => {
    const run = syntheticRun('short', { steps: 10 });
    expect(weftError(() => runCurves([runA, run], ['val'])).message).toMatch(
      /short.metrics\.jsonl has no "val" values/,
    );
  });

  it('an --out that is neither .svg nor .png', () => {
    const out = join(dir, 'chart.jpg');
    expect(weftError(() => plotRuns([runA], { metrics: ['loss'], out })).message).toMatch(
      /chart\.jpg: a chart is written as \.svg or \.png/,
    );
    expect(existsSync(out)).toBe(false);
  });
});
