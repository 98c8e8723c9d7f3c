// Training progress for people: on a terminal, one line redrawn in place (bar, step, loss,
// tokens/s, ETA); otherwise a plain line every `logEvery` steps. Eval results always get a line.

import type { EvalMetrics, StepMetrics } from '../train/metrics.ts';

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export class Progress {
  private readonly tty: boolean;
  private readonly logEvery: number;
  private readonly write: (text: string) => void;
  private drawn = false;

  constructor(logEvery: number, stream: NodeJS.WriteStream = process.stdout) {
    this.tty = stream.isTTY === true;
    this.logEvery = logEvery;
    this.write = (text) => stream.write(text);
  }

  step(m: StepMetrics, total: number): void {
    const eta = (m.elapsedMs / m.step) * (total - m.step);
    const stats =
      `step ${String(m.step).padStart(String(total).length)}/${total} | loss ${m.loss.toFixed(4)} | ` +
      `lr ${m.lr.toExponential(2)} | ${Math.round(m.tokensPerSec).toLocaleString('en-US')} tok/s | ` +
      `${formatDuration(m.elapsedMs)} elapsed, ETA ${formatDuration(eta)}`;
    if (this.tty) {
      const width = 20;
      const done = Math.round((width * m.step) / total);
      this.write(`\r\x1b[K[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${stats}`);
      this.drawn = true;
    } else if (m.step % this.logEvery === 0 || m.step === total || m.step === 1) {
      this.write(`${stats}\n`);
    }
  }

  eval(m: EvalMetrics): void {
    this.line(
      `eval at step ${m.step}: val loss ${m.loss.toFixed(4)} | ppl ${m.ppl.toFixed(2)} | ${m.bpb.toFixed(4)} bits/byte`,
    );
  }

  /** A line of its own, below the redrawn progress line. */
  line(text: string): void {
    if (this.drawn) this.write('\n');
    this.drawn = false;
    this.write(`${text}\n`);
  }
}
