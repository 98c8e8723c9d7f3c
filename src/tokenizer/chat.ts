// The chat template (ChatML): a conversation renders to text as
//   <|im_start|>system\n{content}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n...
// and parses back. encodeChat gives the ids with a mask of the tokens a model learns to produce
// (assistant contents and the <|im_end|> that closes them); SFT, preference data and serving use it.

import { WeftError } from '../util/errors.ts';
import type { Tokenizer } from './types.ts';

export type Role = 'system' | 'user' | 'assistant';
export const ROLES: readonly Role[] = ['system', 'user', 'assistant'];

export interface ChatMessage {
  role: Role;
  content: string;
}

/**
 * Refuses chat with a model of `vocabSize` token rows that has none for the chat template's
 * tokens (GPT-2 as released: 50257 rows; weft's tokenizers put <|im_start|>, <|im_end|> after).
 */
export function checkChatRows(tokenizer: Tokenizer, vocabSize: number, model: string): void {
  if (vocabSize < tokenizer.vocabSize)
    throw new WeftError(
      'WEFT_E_CONFIG',
      `${model} has ${vocabSize} token rows, none for the chat template's tokens (ids ${vocabSize}-${tokenizer.vocabSize - 1}): fine-tune it for chat first (weft train --config CONFIG --set objective=sft --init ${model} --data CHATS.jsonl)`,
    );
}

const START = '<|im_start|>';
const END = '<|im_end|>';

/** Text of `messages`; with `generationPrompt` it ends with an open assistant turn. */
export function renderChat(messages: ChatMessage[], generationPrompt = false): string {
  const turns = messages.map((m) => `${START}${m.role}\n${m.content}${END}\n`).join('');
  return generationPrompt ? `${turns}${START}assistant\n` : turns;
}

/** Inverse of renderChat (without a generation prompt). Throws WEFT_E_FORMAT on other text. */
export function parseChat(text: string): ChatMessage[] {
  const messages: ChatMessage[] = [];
  let at = 0;
  while (at < text.length) {
    const header = text.indexOf('\n', at);
    const role = text.slice(at + START.length, header) as Role;
    const end = text.indexOf(`${END}\n`, header);
    if (!text.startsWith(START, at) || header < 0 || !ROLES.includes(role) || end < 0) {
      throw new WeftError(
        'WEFT_E_FORMAT',
        `text at offset ${at} is not a chat turn (${START}role\\n...${END})`,
      );
    }
    messages.push({ role, content: text.slice(header + 1, end) });
    at = end + END.length + 1;
  }
  return messages;
}

export interface EncodedChat {
  ids: number[];
  /** 1 where the token is one the model should learn to produce (assistant turns), else 0. */
  trainMask: Uint8Array;
}

/**
 * Ids of renderChat(messages, generationPrompt), built turn by turn so contents are never parsed
 * for special tokens (a user typing "<|im_end|>" stays plain text).
 */
export function encodeChat(
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  generationPrompt = false,
): EncodedChat {
  const { imStart, imEnd } = tokenizer.specials;
  const newline = tokenizer.encode('\n');
  const ids: number[] = [];
  const mask: number[] = [];
  const push = (part: number[], train: number) => {
    for (const id of part) {
      ids.push(id);
      mask.push(train);
    }
  };
  for (const m of messages) {
    const train = m.role === 'assistant' ? 1 : 0;
    push([imStart, ...tokenizer.encode(`${m.role}\n`)], 0);
    push([...tokenizer.encode(m.content), imEnd], train);
    push(newline, 0);
  }
  if (generationPrompt) push([imStart, ...tokenizer.encode('assistant\n')], 0);
  return { ids, trainMask: Uint8Array.from(mask) };
}
