// Text from tokens that split UTF-8 characters: a model (scripted-model.ts) emits byte tokens of
// accented letters and an emoji with <|im_start|> between their bytes. Neither completion nor the
// HTTP server (streamed or not) may show U+FFFD for a character still arriving, or a special
// token as text; an ending inside a character is flushed as U+FFFD; stop sequences still match.

import Anthropic from '@anthropic-ai/sdk';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/checkpoint/read.ts';
import { complete } from '../../src/serve/complete.ts';
import type { MessagesRequest } from '../../src/serve/messages.ts';
import { promptIds } from '../../src/serve/messages.ts';
import { ModelHost } from '../../src/serve/models.ts';
import { createApiServer } from '../../src/serve/server.ts';
import { tempDir } from '../helpers/tmp.ts';
import { byteTokenizer, bytesOf, scriptedRun } from './scripted-model.ts';

const { imStart, imEnd } = byteTokenizer.specials;
/** 'héllo 😀 wörld' with <|im_start|> inside é and inside the emoji, then <|im_end|>. */
const SCRIPT = [
  ...bytesOf('h'),
  0xc3,
  imStart,
  0xa9,
  ...bytesOf('llo '),
  0xf0,
  0x9f,
  imStart,
  0x98,
  0x80,
  ...bytesOf(' wörld'),
  imEnd,
];
const TEXT = 'héllo 😀 wörld';
/** Tokens up to the first two bytes of the emoji. */
const INSIDE_EMOJI = SCRIPT.indexOf(0x9f) + 1;

const request: MessagesRequest = {
  model: 'scripted',
  maxTokens: 100,
  system: '',
  messages: [{ role: 'user', content: 'Hi' }],
  temperature: 0,
  topK: 0,
  topP: 1,
  stopSequences: [],
  stream: false,
  seed: 1,
};
const prompt = promptIds(byteTokenizer, request);
const dir = tempDir();
let run = '';
let server: Server;
let client: Anthropic;

beforeAll(async () => {
  run = await scriptedRun(dir, 'scripted', 'utf8-test', prompt.length, SCRIPT);
  server = createApiServer({ host: new ModelHost(run, undefined) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new Anthropic({ baseURL: url, apiKey: 'unused', maxRetries: 0 });
});

afterAll(() => {
  server.close();
  server.closeAllConnections();
});

/** Completes the scripted prompt, collecting the deltas. */
async function completeScripted(maxTokens: number, stopSequences: string[] = []) {
  const { model, tokenizer } = loadModel(run);
  const deltas: string[] = [];
  const done = await complete(model, tokenizer, prompt, {
    maxTokens,
    temperature: 0,
    topK: 0,
    seed: 1,
    stopSequences,
    onText: (delta) => deltas.push(delta),
  });
  return { done, deltas };
}

const expectClean = (deltas: string[]) => {
  for (const delta of deltas) {
    expect(delta).not.toContain('\uFFFD');
    expect(delta).not.toContain('<|');
  }
};

describe('completion over tokens that split characters', () => {
  it('holds bytes until the character completes and shows no special token', async () => {
    const { done, deltas } = await completeScripted(100);
    expect(done.stopReason).toBe('end_turn');
    expect(done.outputTokens).toBe(SCRIPT.length);
    expect(done.text).toBe(TEXT);
    expect(deltas.join('')).toBe(TEXT);
    expectClean(deltas);
  });

  it('flushes a character cut by max_tokens as one U+FFFD at the end', async () => {
    const { done, deltas } = await completeScripted(INSIDE_EMOJI);
    expect(done.stopReason).toBe('max_tokens');
    expect(done.text).toBe('héllo \uFFFD');
    expect(deltas.join('')).toBe(done.text);
    expectClean(deltas.slice(0, -1));
  });

  it('matches stop sequences across held bytes and special tokens', async () => {
    const emoji = await completeScripted(100, ['😀 w']);
    expect(emoji.done).toMatchObject({ stopReason: 'stop_sequence', stopSequence: '😀 w' });
    expect(emoji.done.text).toBe('héllo ');
    expectClean(emoji.deltas);
    const accent = await completeScripted(100, ['él']);
    expect(accent.done).toMatchObject({ text: 'h', stopSequence: 'él' });
  });
});

describe('the HTTP server over tokens that split characters', () => {
  const user = [{ role: 'user' as const, content: 'Hi' }];
  const params = { model: 'scripted', max_tokens: 100, messages: user, temperature: 0 };

  it('answers the whole text, without U+FFFD or special tokens', async () => {
    const message = await client.messages.create(params);
    expect(message.content).toEqual([{ type: 'text', text: TEXT }]);
    expect(message.stop_reason).toBe('end_turn');
    const cut = await client.messages.create({ ...params, max_tokens: INSIDE_EMOJI });
    expect(cut.content).toEqual([{ type: 'text', text: 'héllo \uFFFD' }]);
  });

  it('streams deltas that never split a character', async () => {
    const stream = client.messages.stream(params);
    const pieces: string[] = [];
    stream.on('text', (text) => pieces.push(text));
    const final = await stream.finalMessage();
    expect(pieces.join('')).toBe(TEXT);
    expectClean(pieces);
    expect(final.content).toEqual([{ type: 'text', text: TEXT }]);
    const stopped = await client.messages
      .stream({ ...params, stop_sequences: ['😀'] })
      .finalMessage();
    expect(stopped.content).toEqual([{ type: 'text', text: 'héllo ' }]);
    expect(stopped.stop_sequence).toBe('😀');
  });

  it('refuses a stop sequence that is not well-formed text (a lone surrogate)', async () => {
    const lone = client.messages.create({ ...params, stop_sequences: ['\uDE00'] });
    await expect(lone).rejects.toBeInstanceOf(Anthropic.BadRequestError);
  });
});
