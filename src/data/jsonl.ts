// JSON Lines reading for the SFT and preference sets: each non-empty line is parsed on its own; a
// line that fails is counted under its reason instead of stopping the load.

import { readUtf8 } from '../util/files.ts';

export interface LoadReport {
  /** Non-empty lines read. */
  records: number;
  /** Records turned into examples. */
  kept: number;
  /** Reason -> count of records left out. */
  skipped: Record<string, number>;
}

/** Thrown by a record parser to skip one record, with the reason counted in the report. */
export class SkipRecord extends Error {}

/** Parses every line of `path` with `parse`; malformed lines are skipped and counted. */
export function readJsonl<T>(path: string, parse: (record: unknown) => T[]): { items: T[]; report: LoadReport } {
  const report: LoadReport = { records: 0, kept: 0, skipped: {} };
  const items: T[] = [];
  const skip = (reason: string) => (report.skipped[reason] = (report.skipped[reason] ?? 0) + 1);
  for (const line of readUtf8(path, 'data file').split('\n')) {
    if (line.trim() === '') continue;
    report.records++;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      skip('not valid JSON');
      continue;
    }
    try {
      const parsed = parse(record);
      items.push(...parsed);
      report.kept++;
    } catch (err) {
      if (!(err instanceof SkipRecord)) throw err;
      skip(err.message);
    }
  }
  return { items, report };
}

/** One line summarising a report: "1,807 records, 1,795 kept; skipped: 7 prompts differ, ...". */
export function describeReport(report: LoadReport): string {
  const skipped = Object.entries(report.skipped).map(([why, n]) => `${n} ${why}`);
  const head = `${report.records.toLocaleString('en-US')} records, ${report.kept.toLocaleString('en-US')} kept`;
  return skipped.length ? `${head}; skipped: ${skipped.join(', ')}` : head;
}
