// Everything the README and docs/ point a user at lives in the repository (issue 12, case 9):
// every relative link and every path in backticks that leaves the repository, or names a
// repository file that does not exist, is reported.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/cli.ts';

const pages = [
  'README.md',
  'data/README.md',
  'tests/fixtures/README.md',
  ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`),
].filter((f) => f.endsWith('.md'));

/** Relative link targets ([text](target)) and backticked paths that start with ../ in `page`. */
function targets(page: string): string[] {
  const text = readFileSync(join(ROOT, page), 'utf8');
  const links = [...text.matchAll(/\]\(([^)\s#]+)(?:#[^)]*)?\)/g)]
    .map((m) => m[1])
    .filter((t) => !/^[a-z]+:/.test(t));
  const upward = [...text.matchAll(/`(\.\.\/[^`\s]+)`/g)].map((m) => m[1]);
  return [...links, ...upward];
}

describe('documentation links', () => {
  it.each(pages)('%s points only at files in the repository', (page) => {
    const outside: string[] = [];
    for (const target of targets(page)) {
      const path = resolve(ROOT, dirname(page), target);
      if (relative(ROOT, path).startsWith('..') || !existsSync(path)) outside.push(target);
    }
    expect(outside).toEqual([]);
  });
});
