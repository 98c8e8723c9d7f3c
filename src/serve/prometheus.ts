// A run's status (distributed/run-status.ts) in Prometheus' text exposition format 0.0.4
// (GET /metrics): one HELP and TYPE line per family, then its samples. Every value is the one
// /status.json shows; times in seconds, as Prometheus names them.

import type { RunStatus } from '../distributed/run-status.ts';

type Labels = Record<string, string | number>;

/** A label value escaped as the format asks (backslash, double quote, newline). */
function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function sample(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
  const text = Number.isNaN(value)
    ? 'NaN'
    : Number.isFinite(value)
      ? String(value)
      : value > 0
        ? '+Inf'
        : '-Inf';
  return `${name}${pairs.length > 0 ? `{${pairs.join(',')}}` : ''} ${text}`;
}

/** The text of GET /metrics. */
export function prometheusText(s: RunStatus): string {
  const lines: string[] = [];
  const family = (
    name: string,
    type: 'gauge' | 'counter',
    help: string,
    samples: [Labels, number][],
  ) => {
    if (samples.length === 0) return;
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(sample(name, labels, value));
  };
  const run = { run: s.run.name };
  const last = s.last;
  const val = s.val.at(-1);
  family('weft_step', 'gauge', 'Optimizer steps done.', [[run, s.step]]);
  family('weft_steps', 'gauge', 'Optimizer steps the run is configured for.', [[run, s.run.steps]]);
  family('weft_parameters', 'gauge', 'Parameters of the model.', [[run, s.run.params]]);
  if (last) {
    family('weft_loss', 'gauge', 'Training loss of the latest step (nats per target).', [
      [run, last.loss],
    ]);
    family('weft_learning_rate', 'gauge', 'Learning rate of the latest step.', [[run, last.lr]]);
    family('weft_grad_norm', 'gauge', 'Gradient norm of the latest step, before clipping.', [
      [run, last.gradNorm],
    ]);
    family('weft_tokens_per_second', 'gauge', 'Training tokens per second of the latest step.', [
      [run, last.tokensPerSec],
    ]);
    family(
      'weft_elapsed_seconds',
      'gauge',
      'Seconds since this invocation started, at the latest step.',
      [[run, last.elapsedMs / 1000]],
    );
  }
  if (val) {
    family('weft_val_loss', 'gauge', 'Validation loss of the latest evaluation (nats).', [
      [run, val.loss],
    ]);
    if (val.bpb !== undefined)
      family(
        'weft_val_bits_per_byte',
        'gauge',
        'Validation bits per byte of the latest evaluation.',
        [[run, val.bpb]],
      );
  }
  if (s.etaSeconds !== null)
    family('weft_eta_seconds', 'gauge', 'Seconds left at the recent rate.', [[run, s.etaSeconds]]);
  family('weft_checkpoints_total', 'counter', 'Checkpoints saved by this invocation.', [
    [run, s.checkpoints.length],
  ]);
  family(
    'weft_skipped_steps_total',
    'counter',
    'Steps skipped (a gradient too large for the exact sum).',
    [[run, s.skippedSteps]],
  );
  const who = (w: RunStatus['workers'][number]) => ({ ...run, worker: w.name, rank: w.rank });
  family(
    'weft_worker_up',
    'gauge',
    '1 while the worker is part of the run, 0 once lost or gone.',
    s.workers.map((w) => [who(w), w.state === 'ready' || w.state === 'joining' ? 1 : 0]),
  );
  family(
    'weft_worker_heartbeat_age_seconds',
    'gauge',
    'Seconds since the worker was last heard from.',
    s.workers
      .filter((w) => w.heartbeatAgeMs !== null)
      .map((w) => [who(w), (w.heartbeatAgeMs as number) / 1000]),
  );
  family(
    'weft_worker_straggler',
    'gauge',
    "1 for the latest step's slowest worker.",
    s.workers.map((w) => [who(w), w.straggler ? 1 : 0]),
  );
  const phases = ['compute', 'comm', 'overlap', 'wait', 'data', 'optim'] as const;
  family(
    'weft_step_seconds',
    'gauge',
    "Where the worker's latest step went, by phase (overlap: communication hidden behind compute).",
    s.workers.flatMap((w) =>
      w.times
        ? phases.map((phase): [Labels, number] => [
            { ...who(w), phase },
            (w.times as unknown as Record<string, number>)[`${phase}Ms`] / 1000,
          ])
        : [],
    ),
  );
  return `${lines.join('\n')}\n`;
}
