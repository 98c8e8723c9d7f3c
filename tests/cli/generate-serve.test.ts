// `weft generate` and `weft serve` as a user runs them: streamed text, the KV cache against
// recomputation, stop sequences, prompts from files, chat prompts, tokens that split characters,
// one-line errors, and a server process that prints its address and aliases, answers, logs a
// client that vanishes mid-request in one line, and exits cleanly on SIGTERM.

import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, expectCliError, runCli } from '../helpers/cli.ts';
import { tinyDataset, trainTiny } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';
import { byteTokenizer, bytesOf, scriptedRun, userPrompt } from '../serve/scripted-model.ts';

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

  it('prints text from tokens that split characters whole, without special tokens', async () => {
    // 'né 😀' with <|im_start|> inside é and inside the emoji, then <|im_end|>
    const { imStart, imEnd } = byteTokenizer.specials;
    const script = [...bytesOf('n'), 0xc3, imStart, 0xa9, 0x20, 0xf0, 0x9f, imStart, 0x98, 0x80];
    const bytes = await scriptedRun(dir, 'bytes', 'bytes', userPrompt('Hi').length, [
      ...script,
      imEnd,
    ]);
    const args = ['--checkpoint', bytes, '--chat', '--prompt', 'Hi', '--temperature', '0'];
    const whole = runCli(['generate', ...args, '--max-tokens', '20']);
    expect(whole.stderr).toBe('');
    expect(whole.stdout).toBe('né 😀\n');
    // cut inside the emoji: what was held comes out at the end as one U+FFFD
    const cut = runCli(['generate', ...args, '--max-tokens', String(script.indexOf(0x9f) + 1)]);
    expect(cut.stdout).toBe('né \uFFFD\n');
  });

  it('refuses bad flags with one line', () => {
    expectCliError(gen('--prompt', 'a', '--file', 'b'), /give --prompt or --file, not both/);
    expectCliError(gen('--file', join(dir, 'missing.txt')), /cannot read --file .*missing\.txt/);
    expectCliError(gen('--top-p', '0'), /--top-p must be in \(0, 1\]/);
    expectCliError(gen('--temperature', '-1'), /--temperature -1 is not a number >= 0/);
  });
});

describe('weft serve', () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  });

  /** Starts `weft serve` on a free port; resolves once it prints its address. */
  async function serve(...args: string[]) {
    const child = spawn(
      process.execPath,
      [join(ROOT, 'bin/weft.mjs'), 'serve', '--checkpoint', run, '--port', '0', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    await expect.poll(() => out + err, { timeout: 20_000 }).toMatch(/on http:\/\/127\.0\.0\.1:\d+/);
    const url = /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] as string;
    const stop = async () => {
      child.kill('SIGTERM');
      return exited;
    };
    return { url, stdout: () => out, stderr: () => err, stop };
  }

  const ask = (url: string, model: string) =>
    fetch(`${url}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify({ model, max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] }),
    });

  it('prints its address and aliases, answers the API, and exits 0 on SIGTERM', async () => {
    const server = await serve();
    // the run directory is "run"; its config's name, cli-generate, is an alias
    expect(server.stdout()).toMatch(
      /^serving run \(also answers to "cli-generate"\) on http:\/\/127\.0\.0\.1:\d+ \(step 20, /,
    );
    for (const model of ['run', 'cli-generate']) {
      const res = await ask(server.url, model);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ type: 'message', model: 'run' });
    }
    expect((await ask(server.url, 'other')).status).toBe(404);
    expect(await server.stop()).toBe(0);
  });

  it('logs a client that abandons its request body in one line, no stack trace', async () => {
    const server = await serve();
    const { port } = new URL(server.url);
    const socket = connect(Number(port), '127.0.0.1');
    socket.on('error', () => {});
    socket.write('POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"model":');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    await expect.poll(() => server.stderr(), { timeout: 10_000 }).toMatch(/\S/);
    expect((await ask(server.url, 'run')).status).toBe(200);
    expect(server.stderr()).not.toMatch(/^\s+at /m);
    expect(server.stderr().trim().split('\n')).toHaveLength(1);
    expect(await server.stop()).toBe(0);
  });

  it('refuses a missing or empty key file, or a bad timeout, with one line', () => {
    const missing = runCli(['serve', '--checkpoint', run, '--api-key-file', join(dir, 'no-key')]);
    expectCliError(missing, /--api-key-file .*no-key does not exist/);
    const empty = join(dir, 'empty-key');
    writeFileSync(empty, '\n');
    expectCliError(runCli(['serve', '--checkpoint', run, '--api-key-file', empty]), /is empty/);
    const zero = runCli(['serve', '--checkpoint', run, '--body-timeout', '0']);
    expectCliError(zero, /--body-timeout must be more than 0 seconds/);
    const word = runCli(['serve', '--checkpoint', run, '--header-timeout', 'soon']);
    expectCliError(word, /--header-timeout soon is not a number/);
    const port = runCli(['serve', '--checkpoint', run, '--port', '99999']);
    expectCliError(port, /--port 99999 is not an integer from 0 to 65535/);
  });
});
