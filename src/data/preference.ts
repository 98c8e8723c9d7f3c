// Preference sets for reward models and DPO: (prompt, chosen reply, rejected reply), tokenised as
// the chat-template prompt (ending in an open assistant turn) and the two continuations (reply +
// <|im_end|>). Accepted record shapes:
//   {"prompt": "...", "chosen": "...", "rejected": "..."}   (the prompt is one user turn)
//   hh-rlhf {"chosen": transcript, "rejected": transcript}  ("\n\nHuman: ..." / "\n\nAssistant: ..."
//   turns; the two transcripts must share everything before their last "\n\nAssistant:")
// Records with differing prompts, identical replies or an empty reply are skipped and counted.

import type { ChatMessage } from '../tokenizer/chat.ts';
import { encodeChat } from '../tokenizer/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { LoadReport } from './jsonl.ts';
import { SkipRecord, readJsonl } from './jsonl.ts';

export interface PreferenceText {
  prompt: ChatMessage[];
  chosen: string;
  rejected: string;
}

export interface PreferencePair {
  prompt: number[];
  chosen: number[];
  rejected: number[];
}

const ASSISTANT = '\n\nAssistant:';
const TURN = /\n\n(Human|Assistant):/g;

/** Turns of an hh-rlhf transcript ("\n\nHuman: ...\n\nAssistant: ..."). */
export function parseTranscript(text: string): ChatMessage[] {
  const marks = [...text.matchAll(TURN)];
  if (marks.length === 0 || marks[0].index !== 0) throw new SkipRecord('transcript does not start with "\\n\\nHuman:"');
  return marks.map((m, i) => {
    const from = m.index + m[0].length;
    const to = i + 1 < marks.length ? marks[i + 1].index : text.length;
    return { role: m[1] === 'Human' ? 'user' : 'assistant', content: text.slice(from, to).replace(/^ /, '') };
  });
}

/** The (prompt, chosen, rejected) of one record; throws SkipRecord naming what is wrong. */
export function preferenceText(record: unknown): PreferenceText[] {
  const r = (record ?? {}) as Record<string, unknown>;
  if (typeof r.chosen !== 'string' || typeof r.rejected !== 'string') throw new SkipRecord('missing chosen/rejected');
  let pair: PreferenceText;
  if (typeof r.prompt === 'string') {
    pair = { prompt: [{ role: 'user', content: r.prompt }], chosen: r.chosen, rejected: r.rejected };
  } else {
    const cut = r.chosen.lastIndexOf(ASSISTANT);
    const cutRejected = r.rejected.lastIndexOf(ASSISTANT);
    if (cut < 0 || cutRejected < 0) throw new SkipRecord('no assistant turn');
    if (r.chosen.slice(0, cut) !== r.rejected.slice(0, cutRejected)) throw new SkipRecord('prompts differ');
    pair = {
      prompt: parseTranscript(r.chosen.slice(0, cut)),
      chosen: r.chosen.slice(cut + ASSISTANT.length).replace(/^ /, ''),
      rejected: r.rejected.slice(cutRejected + ASSISTANT.length).replace(/^ /, ''),
    };
  }
  if (pair.chosen.trim() === '' || pair.rejected.trim() === '') throw new SkipRecord('empty reply');
  if (pair.chosen === pair.rejected) throw new SkipRecord('chosen equals rejected');
  return [pair];
}

export function encodePreference(tokenizer: Tokenizer, p: PreferenceText): PreferencePair {
  const reply = (text: string) => [...tokenizer.encode(text), tokenizer.specials.imEnd];
  return {
    prompt: encodeChat(tokenizer, p.prompt, true).ids,
    chosen: reply(p.chosen),
    rejected: reply(p.rejected),
  };
}

/** Reads and tokenises a preference file; malformed records are counted in the report. */
export function loadPreferences(path: string, tokenizer: Tokenizer): { pairs: PreferencePair[]; report: LoadReport } {
  const { items, report } = readJsonl(path, preferenceText);
  return { pairs: items.map((p) => encodePreference(tokenizer, p)), report };
}
