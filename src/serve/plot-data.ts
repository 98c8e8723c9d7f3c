// The curves a chart draws, read from runs' metrics.jsonl (train/metrics.ts has the records): a
// metric name picks a key of the "step" records (loss, lr, gradNorm, tokensPerSec, elapsedMs,
// an objective's extra keys such as rewards/chosen) or of the "eval" records (val = their loss,
// bpb, ppl, a preference evaluation's accuracy and margin); x is always the step.

import { existsSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { readUtf8 } from '../util/files.ts';
import { WeftError } from '../util/errors.ts';

/** One line of a chart: (step, value) points in step order. */
export interface PlotSeries {
  name: string;
  points: [number, number][];
}

type RecordType = 'step' | 'eval';

interface MetricSource {
  record: RecordType;
  key: string;
  /** What the chart's title calls it. */
  label: string;
}

/** The named metrics; any other numeric key of the step (then eval) records works too. */
export const METRICS: Record<string, MetricSource> = {
  loss: { record: 'step', key: 'loss', label: 'training loss (nats)' },
  val: { record: 'eval', key: 'loss', label: 'validation loss (nats)' },
  bpb: { record: 'eval', key: 'bpb', label: 'validation bits per byte' },
  ppl: { record: 'eval', key: 'ppl', label: 'validation perplexity' },
  lr: { record: 'step', key: 'lr', label: 'learning rate' },
  gradNorm: { record: 'step', key: 'gradNorm', label: 'gradient norm (before clipping)' },
  tokensPerSec: { record: 'step', key: 'tokensPerSec', label: 'tokens per second' },
  elapsedMs: { record: 'step', key: 'elapsedMs', label: 'elapsed time (ms)' },
};

/** Keys of the records that are not metrics. */
const NOT_METRICS = new Set(['type', 'step', 'split', 'tokens', 'bytes', 'pairs']);

export type MetricsRecord = Record<string, unknown>;

/** The records of `runDir`/metrics.jsonl; a missing directory or file, or a bad line, is named. */
export function readRunMetrics(runDir: string): MetricsRecord[] {
  if (!existsSync(runDir) || !statSync(runDir).isDirectory())
    throw new WeftError('WEFT_E_CONFIG', `run directory ${runDir} does not exist`);
  const path = join(runDir, 'metrics.jsonl');
  if (!existsSync(path))
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${runDir} has no metrics.jsonl; pass a run directory written by weft train`,
    );
  const lines = readUtf8(path, 'metrics file').split('\n');
  const records: MetricsRecord[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      // a run still writing may have half a line at the end; any other bad line is an error
      if (i === lines.length - 1) return;
      throw new WeftError('WEFT_E_FORMAT', `${path} line ${i + 1} is not JSON`);
    }
    if (record !== null && typeof record === 'object' && !Array.isArray(record))
      records.push(record as MetricsRecord);
  });
  return records;
}

/** Where `metric` is read from, or null when no record of `records` has it. */
function sourceOf(metric: string, records: MetricsRecord[]): MetricSource | null {
  if (Object.hasOwn(METRICS, metric)) return METRICS[metric];
  if (NOT_METRICS.has(metric)) return null;
  for (const record of ['step', 'eval'] as const)
    if (records.some((r) => r.type === record && typeof r[metric] === 'number'))
      return { record, key: metric, label: metric };
  return null;
}

/** The metric names these records can draw: the named ones and their records' extra keys. */
export function metricNames(records: MetricsRecord[]): string[] {
  const extra = new Set<string>();
  const named = new Set(Object.values(METRICS).map((m) => `${m.record}:${m.key}`));
  for (const r of records)
    if (r.type === 'step' || r.type === 'eval')
      for (const [k, v] of Object.entries(r))
        if (typeof v === 'number' && !NOT_METRICS.has(k) && !named.has(`${r.type}:${k}`))
          extra.add(k);
  return [...Object.keys(METRICS), ...[...extra].sort()];
}

/** The (step, value) points of `metric` in `records`, in step order (non-finite values left out). */
function pointsOf(source: MetricSource, records: MetricsRecord[]): [number, number][] {
  const points: [number, number][] = [];
  for (const r of records) {
    const x = r.step;
    const y = r[source.key];
    if (r.type !== source.record || typeof x !== 'number' || typeof y !== 'number') continue;
    if (Number.isFinite(x) && Number.isFinite(y)) points.push([x, y]);
  }
  return points.sort((a, b) => a[0] - b[0]);
}

/** What a chart of runs shows: its title and one series per run and metric. */
export interface RunCurves {
  title: string;
  series: PlotSeries[];
}

/**
 * The curves of `metrics` for each of `runDirs`: a series per run named after its directory (with
 * the metric appended when there are several), or per metric for a single run. An unknown metric,
 * or a run without records of one (unless `skipMissing`: then no series), is a WeftError naming it.
 */
export function runCurves(
  runDirs: string[],
  metrics: string[],
  { skipMissing = false } = {},
): RunCurves {
  const runs = runDirs.map((dir) => ({ dir, records: readRunMetrics(dir) }));
  const all = runs.flatMap((r) => r.records);
  const sources = metrics.map((metric) => {
    const source = sourceOf(metric, all);
    if (!source)
      throw new WeftError(
        'WEFT_E_CONFIG',
        `unknown metric "${metric}"; one of ${metricNames(all).join(', ')}`,
      );
    return source;
  });
  // runs are named after their directories, or by the paths given where two share a name
  const names = runs.map((r) => basename(resolve(r.dir)));
  const label = (i: number) => (new Set(names).size === names.length ? names[i] : runDirs[i]);
  const series: PlotSeries[] = [];
  runs.forEach((run, i) => {
    metrics.forEach((metric, m) => {
      const points = pointsOf(sources[m], run.records);
      if (points.length === 0 && skipMissing) return;
      if (points.length === 0)
        throw new WeftError(
          'WEFT_E_CONFIG',
          `${join(run.dir, 'metrics.jsonl')} has no "${metric}" values` +
            (sources[m].record === 'eval' ? ' (the run did no evaluation: evalEvery 0?)' : ''),
        );
      const name =
        metrics.length === 1 ? label(i) : runs.length === 1 ? metric : `${label(i)} ${metric}`;
      series.push({ name, points });
    });
  });
  const title = sources.map((s) => s.label).join(', ');
  return { title: runs.length === 1 ? `${label(0)}: ${title}` : title, series };
}
