// Supervised fine-tuning sets: JSONL conversations rendered with the chat template, with targets
// -1 everywhere except the assistant's tokens. Accepted record shapes:
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
//   GSM8K          {"question", "answer"}   (calculator annotations <<...>> are removed)
//   self-instruct  {"instruction", "instances": [{"input", "output"}, ...]}   (one example each)
//   Alpaca-style   {"instruction", "input"?, "output"}

import type { ChatMessage, EncodedChat, Role } from '../tokenizer/chat.ts';
import { ROLES, encodeChat } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { LoadReport } from './jsonl.ts';
import { SkipRecord, readJsonl } from './jsonl.ts';
import { BatchLoader } from './loader.ts';

const isString = (v: unknown): v is string => typeof v === 'string';

function instruction(text: string, input: unknown): string {
  return isString(input) && input.trim() !== '' ? `${text}\n\n${input}` : text;
}

function exchange(user: string, assistant: string): ChatMessage[] {
  return [
    { role: 'user', content: user },
    { role: 'assistant', content: assistant },
  ];
}

/** The conversations of one SFT record; throws SkipRecord naming what is wrong. */
export function sftConversations(record: unknown): ChatMessage[][] {
  const r = (record ?? {}) as Record<string, unknown>;
  if (typeof record !== 'object' || record === null) throw new SkipRecord('not a JSON object');
  if (Array.isArray(r.messages)) {
    const messages = r.messages as { role?: unknown; content?: unknown }[];
    for (const m of messages) {
      if (!ROLES.includes(m?.role as Role) || !isString(m?.content)) throw new SkipRecord('bad message (role or content)');
    }
    if (!messages.some((m) => m.role === 'assistant')) throw new SkipRecord('no assistant message');
    return [messages as ChatMessage[]];
  }
  if (isString(r.question) && isString(r.answer)) {
    return [exchange(r.question, r.answer.replace(/<<[^>]*>>/g, ''))];
  }
  if (isString(r.instruction) && Array.isArray(r.instances)) {
    const instances = r.instances as { input?: unknown; output?: unknown }[];
    if (!instances.length || !instances.every((i) => isString(i?.output))) throw new SkipRecord('bad instances');
    return instances.map((i) => exchange(instruction(r.instruction as string, i.input), i.output as string));
  }
  if (isString(r.instruction) && isString(r.output)) {
    return [exchange(instruction(r.instruction, r.input), r.output)];
  }
  throw new SkipRecord('unrecognised record shape');
}

/** Reads and tokenises an SFT file; malformed records are counted in the report. */
export function loadSft(path: string, tokenizer: Tokenizer): { examples: EncodedChat[]; report: LoadReport } {
  const { items, report } = readJsonl(path, sftConversations);
  return { examples: items.map((messages) => encodeChat(tokenizer, messages)), report };
}

/**
 * One example per row: inputs are its first T tokens, the target of position t is token t+1 when
 * that token is trained (assistant), else -1; shorter examples are padded with `pad` and -1.
 * Examples with no trained token within T+1 tokens are dropped (counted in `dropped`).
 */
export class SftLoader extends BatchLoader {
  readonly examples: EncodedChat[];
  readonly dropped: number;
  private readonly pad: number;

  constructor(examples: EncodedChat[], pad: number, seqLen: number, batchSize: number, seed: number, shards = 1) {
    const usable = examples.filter((e) => e.trainMask.subarray(1, seqLen + 1).includes(1));
    super(usable.length, seqLen, batchSize, seed, shards);
    this.examples = usable;
    this.dropped = examples.length - usable.length;
    this.pad = pad;
  }

  protected fillRow(item: number, idx: Int32Array, targets: Int32Array, row: number): void {
    fillSftRow(this.examples[item], idx, targets, row, this.seqLen, this.pad);
  }
}

/** Writes `example` (cut to T tokens, padded with `pad`) into row `row` of idx and targets. */
export function fillSftRow(
  { ids, trainMask }: EncodedChat,
  idx: Int32Array,
  targets: Int32Array,
  row: number,
  T: number,
  pad: number,
): void {
  for (let t = 0; t < T; t++) {
    const inside = t + 1 < ids.length;
    idx[row * T + t] = t < ids.length ? ids[t] : pad;
    targets[row * T + t] = inside && trainMask[t + 1] === 1 ? ids[t + 1] : -1;
  }
}
