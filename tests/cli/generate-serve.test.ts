// `weft generate` and `weft serve` as a user runs them: streamed text, the KV cache against
// recomputation, stop sequences, prompts from files, chat prompts, one-line errors, and a server
// process that prints its address, answers, and exits cleanly on SIGTERM.

import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, expectCliError, runCli } from '../helpers/cli.ts';
import { tinyDataset, trainTiny } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const run = join(dir, 'run');

beforeAll(() => trainTiny(tinyDataset(dir, 20_000), run, { name: 'cli-generate' }), 120_000);

const gen = (...args: string[]) =>
  runCli(['generate', '--checkpoint', run, '--backend', 'reference', ...args]);

describe('weft generate', () => {
  it('gives the same greedy text with the KV cache and without, and runs past the context', () => {
    // 20 new tokens stay within blockSize 32, where decoding with the cache is exact
    const greedy = ['--prompt', 'KING:', '--max-tokens', '20', '--temperature', '0'];
    const cached = gen(...greedy);
    expect(cached.status, cached.stderr).toBe(0);
    expect(cached.stdout.startsWith('KING:')).toBe(true);
    expect(gen(...greedy, '--no-cache').stdout).toBe(cached.stdout);
    // past blockSize the cache re-prefills the newest half; the first 20 tokens are unchanged
    const long = gen('--prompt', 'KING:', '--max-tokens', '60', '--temperature', '0');
    expect(long.status, long.stderr).toBe(0);
    expect(long.stdout.startsWith(cached.stdout.trimEnd())).toBe(true);
  });

  it('is reproducible by seed, stops before a stop sequence, and reads --file', () => {
    const a = gen('--prompt', 'Why', '--max-tokens', '30', '--seed', '3');
    expect(a.stdout).toBe(gen('--prompt', 'Why', '--max-tokens', '30', '--seed', '3').stdout);
    const text = a.stdout.slice('Why'.length).trimEnd();
    const stop = text.slice(3, 6);
    const stopped = gen('--prompt', 'Why', '--max-tokens', '30', '--seed', '3', '--stop', stop);
    expect(stopped.stdout).toBe(`Why${text.slice(0, text.indexOf(stop))}\n`);
    const file = join(dir, 'prompt.txt');
    writeFileSync(file, 'Why');
    expect(gen('--file', file, '--max-tokens', '30', '--seed', '3').stdout).toBe(a.stdout);
    const chat = gen('--chat', '--prompt', 'Hello', '--max-tokens', '5');
    expect(chat.status, chat.stderr).toBe(0);
  });

  it('refuses bad flags with one line', () => {
    expectCliError(gen('--prompt', 'a', '--file', 'b'), /give --prompt or --file, not both/);
    expectCliError(gen('--file', join(dir, 'missing.txt')), /cannot read --file .*missing\.txt/);
    expectCliError(gen('--top-p', '0'), /--top-p must be in \(0, 1\]/);
    expectCliError(gen('--temperature', '-1'), /--temperature -1 is not a number >= 0/);
  });
});

describe('weft serve', () => {
  it('prints its address, answers the Messages API, and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/weft.mjs'), 'serve', '--checkpoint', run, '--port', '0'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    await expect.poll(() => out, { timeout: 20_000 }).toMatch(/on http:\/\/127\.0\.0\.1:\d+/);
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
    expect(out).toMatch(/serving run \(step 20, /);
    const res = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify({
        model: 'run',
        max_tokens: 4,
        messages: [{ role: 'user', content: 'Hi' }],
      }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { type: string }).type).toBe('message');
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('refuses a missing or empty key file with one line', () => {
    const missing = runCli(['serve', '--checkpoint', run, '--api-key-file', join(dir, 'no-key')]);
    expectCliError(missing, /cannot read --api-key-file .*no-key/);
    const empty = join(dir, 'empty-key');
    writeFileSync(empty, '\n');
    expectCliError(runCli(['serve', '--checkpoint', run, '--api-key-file', empty]), /is empty/);
  });
});
