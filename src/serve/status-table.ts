// The run's status (GET /status.json) as text for a terminal (weft status): a summary line, then
// one row per worker with its latest step's time breakdown, the straggler marked with '*'.

import type { RunStatus } from '../distributed/run-status.ts';

const num = (x: number | undefined, digits: number) =>
  x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);

function duration(seconds: number | null): string {
  if (seconds === null) return '-';
  const s = Math.round(seconds);
  const pad = (n: number) => String(n).padStart(2, '0');
  const [h, m] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60)];
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** Columns padded to their widest cell (numbers right-aligned). */
function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r
      .map((cell, i) =>
        /^[-\d.]+$/.test(cell) && i > 0 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]),
      )
      .join('  ')
      .trimEnd(),
  );
}

export function statusTable(s: RunStatus): string {
  const last = s.last;
  const val = s.val.at(-1);
  const lines = [
    `${s.run.name} (${s.phase}): step ${s.step}/${s.run.steps} | loss ${num(last?.loss, 4)} | val ${num(val?.loss, 4)} | ${last ? Math.round(last.tokensPerSec).toLocaleString('en-US') : '-'} tok/s | lr ${last ? last.lr.toExponential(2) : '-'} | ETA ${duration(s.etaSeconds)}`,
    '',
  ];
  const header = [
    'worker',
    'rank',
    'host',
    'state',
    'heard s',
    'step',
    'compute',
    'comm',
    'wait',
    'data',
    'optim',
  ];
  const rows = s.workers.map((w) => {
    const t = w.times;
    const ms = (x: number | undefined) => num(x, 1);
    return [
      `${w.straggler ? '*' : ' '} ${w.name}`,
      String(w.rank),
      w.host || '-',
      w.reason ? `${w.state}: ${w.reason}` : w.state,
      w.heartbeatAgeMs === null ? '-' : num(w.heartbeatAgeMs / 1000, 1),
      t ? String(t.step) : '-',
      ms(t?.computeMs),
      ms(t?.commMs),
      ms(t?.waitMs),
      ms(t?.dataMs),
      ms(t?.optimMs),
    ];
  });
  lines.push(...table([['  ' + header[0], ...header.slice(1)], ...rows]));
  lines.push(
    '',
    `times in ms of each worker's latest step; * the straggler (the others wait for it)`,
  );
  return `${lines.join('\n')}\n`;
}
