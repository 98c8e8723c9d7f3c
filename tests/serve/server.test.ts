// `weft serve` driven by the official Anthropic TypeScript SDK: create, stream, stop sequences,
// errors in the API's shape, the config's name as a model alias, authentication, fuzzed and
// oversized bodies, 50 concurrent streams, cancellation on disconnect, overload, and following a
// training run's new checkpoints.

import Anthropic from '@anthropic-ai/sdk';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { complete } from '../../src/serve/complete.ts';
import { promptIds } from '../../src/serve/messages.ts';
import type { MessagesRequest } from '../../src/serve/messages.ts';
import { ModelHost } from '../../src/serve/models.ts';
import type { ServerOptions } from '../../src/serve/server.ts';
import { createApiServer } from '../../src/serve/server.ts';
import { tinyDataset, trainTiny } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const run = join(dir, 'tiny-chat');
const train = (steps: number, resume = false) =>
  trainTiny(join(dir, 'ds'), run, { blockSize: 128, steps, ckptEvery: 15 }, resume);

// SDK 1.x no longer types temperature, top_k and top_p (nor weft's seed); it still sends them.
type Create = Anthropic.MessageCreateParamsNonStreaming;
type Extra = { temperature?: number; top_k?: number; top_p?: number; seed?: number };
const create = (params: Omit<Create, keyof Extra> & Extra) =>
  client.messages.create(params as Create);

async function listen(options: Omit<ServerOptions, 'host'> & { host?: ModelHost } = {}) {
  const host = options.host ?? new ModelHost(run, undefined);
  const server = createApiServer({ ...options, host });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  servers.push(server);
  return { server, url, host };
}
const servers: Server[] = [];

let url = '';
let client: Anthropic;
const model = 'tiny-chat';
const user = (content: string) => [{ role: 'user' as const, content }];

beforeAll(async () => {
  tinyDataset(dir);
  await train(15);
  ({ url } = await listen());
  client = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
}, 120_000);

afterAll(() => {
  for (const server of servers) {
    server.close();
    server.closeAllConnections();
  }
});

describe('the Messages API through the official SDK', () => {
  it('messages.create returns a message in the API shape, reproducible by seed', async () => {
    const params = { model, max_tokens: 12, messages: user('Good morrow'), seed: 4 };
    const message = await client.messages.create(
      params as Anthropic.MessageCreateParamsNonStreaming,
    );
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model });
    expect(message.id).toMatch(/^msg_[0-9a-f]{24}$/);
    expect(message.content).toHaveLength(1);
    expect(message.content[0].type).toBe('text');
    expect(['end_turn', 'max_tokens']).toContain(message.stop_reason);
    expect(message.usage.input_tokens).toBeGreaterThan(5);
    expect(message.usage.output_tokens).toBeGreaterThan(0);
    expect(message.usage.output_tokens).toBeLessThanOrEqual(12);
    const again = await create(params);
    expect(again.content).toEqual(message.content);
  });

  it('messages.stream delivers text events that add up to finalMessage()', async () => {
    const stream = client.messages.stream({
      model,
      max_tokens: 16,
      system: 'You are a player.',
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Speak' }] },
        { role: 'assistant', content: 'Now' },
        { role: 'user', content: 'More' },
      ],
      ...({ temperature: 0.7, top_k: 20, top_p: 0.9 } as object),
    });
    const pieces: string[] = [];
    stream.on('text', (text) => pieces.push(text));
    const final = await stream.finalMessage();
    expect(pieces.length).toBeGreaterThan(0);
    const block = final.content[0];
    expect(block.type === 'text' && block.text).toBe(pieces.join(''));
    expect(final.usage.output_tokens).toBeLessThanOrEqual(16);
    expect(['end_turn', 'max_tokens']).toContain(final.stop_reason);
  });

  it('stops at a stop sequence and leaves it out of the text', async () => {
    const base = { model, max_tokens: 40, messages: user('Hark'), temperature: 1, seed: 11 };
    const free = await create(base);
    const text = free.content[0].type === 'text' ? free.content[0].text : '';
    expect(text.length).toBeGreaterThan(8);
    const stop = text.slice(4, 7);
    const stopped = await create({ ...base, stop_sequences: [stop, 'NEVER-APPEARS'] });
    expect(stopped.stop_reason).toBe('stop_sequence');
    expect(stopped.stop_sequence).toBe(stop);
    expect(stopped.content[0].type === 'text' && stopped.content[0].text).toBe(
      text.slice(0, text.indexOf(stop)),
    );
    // streamed, the same: no delta ever carries the start of the stop sequence
    const stream = client.messages.stream({ ...base, stop_sequences: [stop] });
    const final = await stream.finalMessage();
    expect(final.content).toEqual(stopped.content);
  });

  it('answers a bad request with 400 invalid_request_error', async () => {
    const bad = client.messages.create({ model, messages: user('hi') } as never);
    await expect(bad).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    const error = (await bad.catch((e: unknown) => e)) as InstanceType<typeof Anthropic.APIError>;
    expect(error.status).toBe(400);
    expect(error.error).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: field required' },
    });
    const unknown = client.messages.create({ model: 'gpt-9', max_tokens: 5, messages: user('x') });
    await expect(unknown).rejects.toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('lists its model', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual([model]);
    expect((await client.models.retrieve(model)).id).toBe(model);
  });

  it("answers to the run config's name as an alias, listing only the run's id", async () => {
    // the run directory is tiny-chat; its config's name is tiny-test
    const message = await create({ model: 'tiny-test', max_tokens: 3, messages: user('hi') });
    expect(message.model).toBe(model);
    const streamed = await client.messages
      .stream({ model: 'tiny-test', max_tokens: 3, messages: user('hi') })
      .finalMessage();
    expect(streamed.model).toBe(model);
    expect((await client.models.list()).data.map((m) => m.id)).toEqual([model]);
    expect((await client.models.retrieve('tiny-test')).id).toBe(model);
    const res = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify({ model: 'tiny', max_tokens: 3, messages: user('hi') }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
    await expect(client.models.retrieve('tiny')).rejects.toBeInstanceOf(Anthropic.NotFoundError);
    // a malformed escape names no model either (it used to be a 500 with a stack trace)
    expect((await fetch(`${url}/v1/models/%E0%A4%A`)).status).toBe(404);
  });
});

describe('authentication', () => {
  it('accepts the key as x-api-key or Bearer and refuses a wrong one with 401', async () => {
    const { url: keyed } = await listen({ apiKey: 'sesame' });
    const ok = new Anthropic({ baseURL: keyed, apiKey: 'sesame', maxRetries: 0 });
    const viaBearer = new Anthropic({ baseURL: keyed, apiKey: null, authToken: 'sesame' });
    const wrong = new Anthropic({ baseURL: keyed, apiKey: 'open', maxRetries: 0 });
    const params = { model, max_tokens: 3, messages: user('hi') };
    expect((await ok.messages.create(params)).type).toBe('message');
    expect((await viaBearer.messages.create(params)).type).toBe('message');
    const denied = wrong.messages.create(params);
    await expect(denied).rejects.toBeInstanceOf(Anthropic.AuthenticationError);
    const raw = await fetch(`${keyed}/v1/models`);
    expect(raw.status).toBe(401);
    expect(await raw.json()).toMatchObject({
      type: 'error',
      error: { type: 'authentication_error' },
    });
  });
});

describe('robustness', () => {
  const post = (body: string | Uint8Array, target = url) =>
    fetch(`${target}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });

  it('answers fuzzed and malformed bodies with 4xx errors and keeps serving', async () => {
    const valid = { model, max_tokens: 2, messages: user('hi') };
    const bodies: (string | Uint8Array)[] = [
      '',
      'null',
      '[]',
      '{"model":',
      JSON.stringify({ ...valid, max_tokens: -1 }),
      JSON.stringify({ ...valid, max_tokens: 1e9 }),
      JSON.stringify({ ...valid, max_tokens: 1.5 }),
      JSON.stringify({ ...valid, messages: [{ role: 'system', content: 'x' }] }),
      JSON.stringify({ ...valid, messages: [{ role: 'user', content: [{ type: 'image' }] }] }),
      JSON.stringify({ ...valid, messages: [{ role: 'user', content: 7 }] }),
      JSON.stringify({ ...valid, temperature: 'hot' }),
      JSON.stringify({ ...valid, temperature: 3 }),
      JSON.stringify({ ...valid, top_p: 0 }),
      JSON.stringify({ ...valid, stop_sequences: [''] }),
      JSON.stringify({ ...valid, stop_sequences: 'x' }),
      JSON.stringify({ ...valid, stream: 'yes' }),
      JSON.stringify({ ...valid, tools: [] }),
      JSON.stringify({ ...valid, messages: user('x'.repeat(5000)) }), // longer than the context
    ];
    let seed = 12345;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 60; i++) {
      const text = JSON.stringify(valid);
      const cut = Math.floor(random() * text.length);
      bodies.push(text.slice(0, cut) + String.fromCharCode(32 + Math.floor(random() * 90)));
      bodies.push(Uint8Array.from({ length: 1 + Math.floor(random() * 64) }, () => random() * 256));
    }
    for (const body of bodies) {
      const res = await post(body);
      expect(res.status, String(body)).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      const json = (await res.json()) as { type: string; error: { type: string } };
      expect(json.type).toBe('error');
      expect(json.error.type).toBe('invalid_request_error');
    }
    const big = await post(JSON.stringify({ ...valid, pad: 'x'.repeat(2 << 20) }));
    expect(big.status).toBe(413);
    expect(((await big.json()) as { error: { type: string } }).error.type).toBe(
      'request_too_large',
    );
    const after = await post(JSON.stringify(valid));
    expect(after.status).toBe(200);
  });

  it('serves 50 concurrent streaming clients to completion', async () => {
    const streams = Array.from({ length: 50 }, (_, i) =>
      client.messages
        .stream({ model, max_tokens: 8, messages: user(`client ${i}`) })
        .finalMessage(),
    );
    const finals = await Promise.all(streams);
    expect(finals).toHaveLength(50);
    for (const final of finals) expect(final.usage.output_tokens).toBeGreaterThan(0);
    expect(new Set(finals.map((f) => f.id)).size).toBe(50);
  });

  it('stops generating for a client that disconnects', async () => {
    const lines: string[] = [];
    const { url: logged } = await listen({ log: (line) => lines.push(line) });
    const abort = new AbortController();
    // greedy, so the run is the same every time: a sampled one could end early (end_turn) and
    // never see the disconnect
    const body = { model, max_tokens: 4000, stream: true, temperature: 0, messages: user('go') };
    const res = await fetch(`${logged}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    abort.abort();
    await expect.poll(() => lines.join('\n'), { timeout: 10_000 }).toMatch(/client went away/);
    const tokens = Number(/after (\d+) tokens/.exec(lines.join('\n'))?.[1]);
    expect(tokens).toBeLessThan(4000);
  });

  it('keeps answering others while a client never reads its stream', async () => {
    const { port } = new URL(url);
    const body = JSON.stringify({ model, max_tokens: 2000, stream: true, messages: user('go') });
    const socket = connect(Number(port), '127.0.0.1');
    socket.write(
      `POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    socket.pause(); // never read
    // a stalled server would leave this pending until the test times out
    const other = await create({ model, max_tokens: 5, messages: user('quick') });
    expect(other.type).toBe('message');
    socket.destroy();
  });

  it('answers 529 overloaded_error when the queue is full', async () => {
    const { url: small } = await listen({ concurrency: 1, maxQueued: 0 });
    const body = (n: number) =>
      JSON.stringify({ model, max_tokens: n, stream: true, messages: user('hi') });
    // the first request holds the one slot while it streams up to 2,000 tokens; it may sample
    // <|im_end|> early and free the slot before the second arrives: then try again
    for (let attempt = 1; ; attempt++) {
      const firstRes = await fetch(`${small}/v1/messages`, { method: 'POST', body: body(2000) });
      const second = await post(body(2), small);
      const first = await firstRes.text();
      if (second.status === 200 && first.includes('"stop_reason":"end_turn"') && attempt < 5) {
        await second.text();
        continue;
      }
      expect(second.status).toBe(529);
      expect(await second.json()).toMatchObject({ error: { type: 'overloaded_error' } });
      return;
    }
  });
});

describe('following a run', () => {
  it('switches to the checkpoint training publishes, and answers from it', async () => {
    const lines: string[] = [];
    const host = new ModelHost(run, undefined, (line) => lines.push(line));
    const before = host.current.step;
    expect(host.refresh()).toBe(false);
    const inFlight = host.lease(); // a request still generating with the old model
    await train(30, true);
    expect(host.refresh()).toBe(true);
    expect(host.current.step).toBe(30);
    expect(before).toBeLessThan(30);
    expect(lines).toEqual([expect.stringMatching(/now serving .*step-00000030 \(step 30\)/)]);
    inFlight.release(); // its buffers go back to the backend only now
    expect(lines[1]).toBe(`released the model of step ${before}`);
    // the switched model answers exactly as the checkpoint does when loaded directly
    const request: MessagesRequest = {
      model,
      maxTokens: 6,
      system: '',
      messages: user('Whence'),
      temperature: 0,
      topK: 0,
      topP: 1,
      stopSequences: [],
      stream: false,
      seed: 1,
    };
    const { url: following } = await listen({ host });
    const direct = new ModelHost(run, undefined).current;
    const want = await complete(
      direct.model,
      direct.tokenizer,
      promptIds(direct.tokenizer, request),
      {
        ...request,
      },
    );
    const got = await new Anthropic({ baseURL: following, apiKey: 'x' }).messages.create({
      model,
      max_tokens: 6,
      messages: user('Whence'),
      ...({ temperature: 0 } as object),
    });
    expect(got.content[0].type === 'text' && got.content[0].text).toBe(want.text);
  });
});
