// Charts of training curves without a browser: Apache ECharts renders the chart to an SVG
// string on the server (its SSR mode), and resvg turns that into a PNG of exactly the asked
// size. Text is set in the DejaVu Sans file committed under assets/fonts/, never a system font,
// so a PNG has the same pixels on every machine. Both libraries load on first use (the CLI
// starts without them).

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Echarts from 'echarts';
import type * as ResvgJs from '@resvg/resvg-js';
import { WeftError } from '../util/errors.ts';
import type { PlotSeries } from './plot-data.ts';
import { runCurves } from './plot-data.ts';

export const FONT_FILE = fileURLToPath(
  new URL('../../assets/fonts/DejaVuSans.ttf', import.meta.url),
);
export const FONT_FAMILY = 'DejaVu Sans';
/** Line colors, in series order (Tableau 10). */
export const PALETTE = [
  '#4e79a7',
  '#f28e2b',
  '#e15759',
  '#76b7b2',
  '#59a14f',
  '#edc948',
  '#b07aa1',
  '#ff9da7',
  '#9c755f',
  '#bab0ac',
];
export const DEFAULT_SIZE = { width: 800, height: 500 };
/** A series with at most this many points (an evaluation's) marks each point. */
const MARKED_POINTS = 40;

export interface ChartSpec {
  title: string;
  series: PlotSeries[];
  /** Pixels. */
  width: number;
  height: number;
}

// the CommonJS builds: one file each, a fraction of the time the ES modules take to load
const require = createRequire(import.meta.url);
let echarts: typeof Echarts | undefined;
let resvg: typeof ResvgJs | undefined;

/** The chart as an SVG document of `width` x `height`. */
export function renderSvg(spec: ChartSpec): string {
  echarts ??= require('echarts') as typeof Echarts;
  const chart = echarts.init(null, null, {
    renderer: 'svg',
    ssr: true,
    width: spec.width,
    height: spec.height,
  });
  try {
    chart.setOption({
      animation: false,
      backgroundColor: '#ffffff',
      color: PALETTE,
      textStyle: { fontFamily: FONT_FAMILY },
      title: {
        text: spec.title,
        left: 'center',
        textStyle: { fontFamily: FONT_FAMILY, fontWeight: 'normal', fontSize: 16 },
      },
      legend: { bottom: 8, textStyle: { fontFamily: FONT_FAMILY } },
      grid: { left: 64, right: 48, top: 48, bottom: 72 },
      xAxis: { type: 'value', name: 'step', min: 0, max: 'dataMax', minInterval: 1 },
      yAxis: { type: 'value', scale: true },
      series: spec.series.map((s) => ({
        type: 'line',
        name: s.name,
        data: s.points,
        showSymbol: s.points.length <= MARKED_POINTS,
        symbolSize: 5,
        lineStyle: { width: 1.5 },
        sampling: 'lttb',
      })),
    });
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

/** An SVG document rasterized to a PNG of `width` x `height` pixels, text in the committed font. */
export function svgToPng(svg: string, width: number, height: number): Buffer {
  resvg ??= require('@resvg/resvg-js') as typeof ResvgJs;
  const image = new resvg.Resvg(svg, {
    font: { loadSystemFonts: false, fontFiles: [FONT_FILE], defaultFontFamily: FONT_FAMILY },
    fitTo: { mode: 'width', value: width },
    background: '#ffffff',
  }).render();
  if (image.width !== width || image.height !== height)
    throw new Error(`rendered ${image.width}x${image.height}, not ${width}x${height}`);
  return image.asPng();
}

/** The file format `out` names by its extension; anything but .svg or .png is a WeftError. */
export function chartFormat(out: string): 'svg' | 'png' {
  const ext = extname(out).toLowerCase();
  if (ext === '.svg' || ext === '.png') return ext === '.svg' ? 'svg' : 'png';
  throw new WeftError(
    'WEFT_E_CONFIG',
    `--out ${out}: a chart is written as .svg or .png; end the file name with one of them`,
  );
}

/** The chart's bytes in `out`'s format. */
export function renderChart(spec: ChartSpec, format: 'svg' | 'png'): Buffer {
  const svg = renderSvg(spec);
  return format === 'svg' ? Buffer.from(svg) : svgToPng(svg, spec.width, spec.height);
}

export interface PlotOptions {
  metrics: string[];
  out: string;
  width?: number;
  height?: number;
}

/** Draws `metrics` of the runs in `runDirs` into `out` (.svg or .png); returns the series drawn. */
export function plotRuns(runDirs: string[], options: PlotOptions): PlotSeries[] {
  const format = chartFormat(options.out);
  const { title, series } = runCurves(runDirs, options.metrics);
  const width = options.width ?? DEFAULT_SIZE.width;
  const height = options.height ?? DEFAULT_SIZE.height;
  const bytes = renderChart({ title, series, width, height }, format);
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, bytes);
  return series;
}

/** The chart a run writes when it ends: `loss.svg`, training loss and (if evaluated) val loss. */
export const LOSS_CHART = 'loss.svg';

/**
 * Writes `runDir`/loss.svg; returns its path, or null when the run has no step records yet (and
 * an older run's chart there is removed).
 */
export function writeLossChart(runDir: string): string | null {
  const { series } = runCurves([runDir], ['loss', 'val'], { skipMissing: true });
  const out = join(runDir, LOSS_CHART);
  if (!series.some((s) => s.name === 'loss')) {
    rmSync(out, { force: true });
    return null;
  }
  const title = `${basename(resolve(runDir))}: loss (nats)`;
  const named = series.map((s) => ({ ...s, name: s.name === 'loss' ? 'train' : s.name }));
  writeFileSync(out, renderSvg({ title, series: named, ...DEFAULT_SIZE }));
  return out;
}
