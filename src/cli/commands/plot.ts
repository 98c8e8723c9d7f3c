// `weft plot`: one or several runs' curves from their metrics.jsonl in one chart (a line per run,
// x = step), written as SVG or PNG without a browser (serve/plot.ts).

import type { Command } from 'commander';
import { DEFAULT_SIZE, plotRuns } from '../../serve/plot.ts';
import { METRICS } from '../../serve/plot-data.ts';
import { check } from '../../util/errors.ts';
import { numberFlag } from './options.ts';

interface PlotFlags {
  out: string;
  metric: string;
  width: string;
  height: string;
}

/** Pixels a side may have. */
const MIN_SIDE = 100;
const MAX_SIDE = 8192;

function side(name: string, value: string): number {
  const n = numberFlag(name, value, { min: MIN_SIDE, integer: true });
  check(n <= MAX_SIDE, 'WEFT_E_CONFIG', `${name} ${value} is more than ${MAX_SIDE} pixels`);
  return n;
}

export function registerPlot(program: Command): void {
  program
    .command('plot')
    .description("draw runs' training curves from their metrics.jsonl into an SVG or PNG chart")
    .argument('<run-dir...>', 'run directories (one line each; the legend names them)')
    .requiredOption('--out <file>', 'the chart: FILE.svg or FILE.png')
    .option(
      '--metric <names>',
      `what to draw, comma-separated: ${Object.keys(METRICS).join(', ')}, or another numeric key of the step or eval records (not their counts: tokens, bytes, pairs)`,
      'loss',
    )
    .option('--width <px>', 'width in pixels', String(DEFAULT_SIZE.width))
    .option('--height <px>', 'height in pixels', String(DEFAULT_SIZE.height))
    .action((runDirs: string[], flags: PlotFlags) => {
      const metrics = flags.metric
        .split(',')
        .map((m) => m.trim())
        .filter((m) => m !== '');
      check(metrics.length > 0, 'WEFT_E_CONFIG', '--metric names no metric; try --metric loss');
      const width = side('--width', flags.width);
      const height = side('--height', flags.height);
      const series = plotRuns(runDirs, { metrics, out: flags.out, width, height });
      const points = series.reduce((n, s) => n + s.points.length, 0);
      console.log(`wrote ${flags.out}: ${series.length} series, ${points} points`);
    });
}
