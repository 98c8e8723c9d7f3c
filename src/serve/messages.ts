// Anthropic's Messages API, the parts weft serves: checking a request body (every field's type
// and range, with the API's error shape), rendering its conversation with the chat template, and
// the response object and stream events. Pure functions; server.ts does the HTTP.

import { randomBytes } from 'node:crypto';
import type { ChatMessage } from '../tokenizer/chat.ts';
import { encodeChat } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/types.ts';
import { isObject } from '../util/json.ts';
import type { Completion, StopReason } from './complete.ts';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'overloaded_error'
  | 'api_error';

const STATUS: Record<ErrorType, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  not_found_error: 404,
  request_too_large: 413,
  api_error: 500,
  overloaded_error: 529,
};

/**
 * An error the API reports as {"type":"error","error":{"type","message"}} with its status (the
 * type's, or another 4xx: the API uses invalid_request_error for 4xx codes it does not list).
 */
export class ApiError extends Error {
  readonly status: number;

  constructor(
    readonly type: ErrorType,
    message: string,
    status?: number,
  ) {
    super(message);
    this.status = status ?? STATUS[type];
  }

  body(): { type: 'error'; error: { type: ErrorType; message: string } } {
    return { type: 'error', error: { type: this.type, message: this.message } };
  }
}

export interface Limits {
  /** Largest max_tokens a request may ask for. */
  maxTokens: number;
  /** Most stop sequences, and the longest one (characters). */
  maxStopSequences: number;
  maxStopLength: number;
}

export interface MessagesRequest {
  model: string;
  maxTokens: number;
  system: string;
  messages: ChatMessage[];
  temperature: number;
  topK: number;
  topP: number;
  stopSequences: string[];
  stream: boolean;
  /** weft's extension: the sampling seed (default: a fresh random one). */
  seed: number;
}

const UNSUPPORTED = ['tools', 'tool_choice', 'thinking', 'mcp_servers', 'container'];

/** In a `u` regex a surrogate pair is one code point, so this matches only half pairs. */
const LONE_SURROGATE = /\p{Cs}/u;

const invalid = (message: string) => new ApiError('invalid_request_error', message);

function numberField(
  body: Record<string, unknown>,
  name: string,
  fallback: number,
  min: number,
  max: number,
  integer = false,
): number {
  const value = body[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isInteger(value)))
    throw invalid(`${name}: expected ${integer ? 'an integer' : 'a number'}`);
  if (value < min || value > max) throw invalid(`${name}: must be between ${min} and ${max}`);
  return value;
}

/** Text of a content field: a string, or an array of text blocks (joined). */
function textOf(content: unknown, where: string): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) throw invalid(`${where}: expected a string or an array of blocks`);
  return content
    .map((block, i) => {
      if (!isObject(block) || block.type !== 'text' || typeof block.text !== 'string') {
        const type = isObject(block) ? String(block.type) : typeof block;
        throw invalid(`${where}.${i}: only text blocks are supported (got ${type})`);
      }
      return block.text;
    })
    .join('');
}

/** Checks a parsed JSON body; throws ApiError (400) naming the first bad field. */
export function parseMessagesRequest(body: unknown, limits: Limits): MessagesRequest {
  if (!isObject(body)) throw invalid('request body must be a JSON object');
  for (const name of UNSUPPORTED)
    if (body[name] !== undefined) throw invalid(`${name}: not supported by weft models`);
  if (typeof body.model !== 'string' || body.model.length === 0)
    throw invalid('model: field required (a string)');
  if (body.max_tokens === undefined) throw invalid('max_tokens: field required');
  const maxTokens = numberField(body, 'max_tokens', 0, 1, limits.maxTokens, true);
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw invalid('messages: expected a non-empty array');
  const messages = body.messages.map((m: unknown, i): ChatMessage => {
    if (!isObject(m)) throw invalid(`messages.${i}: expected an object`);
    if (m.role !== 'user' && m.role !== 'assistant')
      throw invalid(`messages.${i}.role: expected "user" or "assistant"`);
    return { role: m.role, content: textOf(m.content, `messages.${i}.content`) };
  });
  if (messages[0].role !== 'user') throw invalid('messages.0.role: the first message must be user');
  const system = body.system === undefined ? '' : textOf(body.system, 'system');
  const stops = body.stop_sequences ?? [];
  if (!Array.isArray(stops) || stops.some((s) => typeof s !== 'string' || s.length === 0))
    throw invalid('stop_sequences: expected an array of non-empty strings');
  if (stops.length > limits.maxStopSequences)
    throw invalid(`stop_sequences: at most ${limits.maxStopSequences}`);
  if (stops.some((s: string) => s.length > limits.maxStopLength))
    throw invalid(`stop_sequences: each at most ${limits.maxStopLength} characters`);
  // text never holds half a surrogate pair, and a stop matching one would split a character
  if (stops.some((s: string) => LONE_SURROGATE.test(s)))
    throw invalid('stop_sequences: a lone surrogate (half a character) can never match');
  if (body.stream !== undefined && typeof body.stream !== 'boolean')
    throw invalid('stream: expected a boolean');
  return {
    model: body.model,
    maxTokens,
    system,
    messages,
    temperature: numberField(body, 'temperature', 1, 0, 1),
    topK: numberField(body, 'top_k', 0, 0, 1e9, true),
    topP: numberField(body, 'top_p', 1, 1e-9, 1),
    stopSequences: stops as string[],
    stream: body.stream === true,
    seed: numberField(body, 'seed', randomBytes(4).readUInt32LE(0), 0, 2 ** 32, true),
  };
}

/**
 * Prompt ids: system and messages in the chat template, then an open assistant turn. A final
 * assistant message is continued (its text is the start of the answer), as the API does.
 */
export function promptIds(tokenizer: Tokenizer, request: MessagesRequest): number[] {
  const turns: ChatMessage[] = request.system
    ? [{ role: 'system', content: request.system }, ...request.messages]
    : [...request.messages];
  const last = turns[turns.length - 1];
  if (last.role === 'assistant') {
    const { ids } = encodeChat(tokenizer, turns.slice(0, -1), true);
    return [...ids, ...tokenizer.encode(last.content)];
  }
  return encodeChat(tokenizer, turns, true).ids;
}

export const newMessageId = () => `msg_${randomBytes(12).toString('hex')}`;

export interface MessageObject {
  id: string;
  type: 'message';
  role: 'assistant';
  content: { type: 'text'; text: string }[];
  model: string;
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: { input_tokens: number; output_tokens: number };
}

export function messageObject(id: string, model: string, done: Completion): MessageObject {
  return {
    id,
    type: 'message',
    role: 'assistant',
    content: [{ type: 'text', text: done.text }],
    model,
    stop_reason: done.stopReason,
    stop_sequence: done.stopSequence,
    usage: { input_tokens: done.inputTokens, output_tokens: done.outputTokens },
  };
}

/** One server-sent event. */
export function sse(type: string, data: object): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/** The events before the first text: message_start and content_block_start. */
export function streamStart(id: string, model: string, inputTokens: number): string {
  const message: MessageObject = {
    id,
    type: 'message',
    role: 'assistant',
    content: [],
    model,
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: inputTokens, output_tokens: 0 },
  };
  return (
    sse('message_start', { message }) +
    sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
  );
}

export const streamDelta = (text: string) =>
  sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text } });

/** The events after the last text: content_block_stop, message_delta, message_stop. */
export function streamEnd(done: Completion): string {
  return (
    sse('content_block_stop', { index: 0 }) +
    sse('message_delta', {
      delta: { stop_reason: done.stopReason, stop_sequence: done.stopSequence },
      usage: { output_tokens: done.outputTokens },
    }) +
    sse('message_stop', {})
  );
}
