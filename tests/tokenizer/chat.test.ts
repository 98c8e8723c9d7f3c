// The chat template: text round trip, ids equal to parsing the rendered text, and the mask of
// tokens SFT trains on.

import { describe, expect, it } from 'vitest';
import { BpeTokenizer } from '../../src/tokenizer/bpe.ts';
import type { ChatMessage } from '../../src/tokenizer/chat.ts';
import { encodeChat, parseChat, renderChat } from '../../src/tokenizer/chat.ts';
import { expectWeftError } from '../helpers/errors.ts';

const chat: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Say hi.\nTwice.' },
  { role: 'assistant', content: 'Hi. Hi.' },
];

describe('chat template', () => {
  it('renders ChatML and parses it back', () => {
    const text = renderChat(chat);
    expect(text).toBe(
      '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nSay hi.\nTwice.<|im_end|>\n<|im_start|>assistant\nHi. Hi.<|im_end|>\n',
    );
    expect(parseChat(text)).toEqual(chat);
    expect(renderChat(chat.slice(0, 2), true).endsWith('<|im_start|>assistant\n')).toBe(true);
  });

  it.each([
    ['gpt2', BpeTokenizer.gpt2()],
    ['byte', BpeTokenizer.bytes()],
  ])(
    '%s: ids equal the rendered text parsed with specials; the mask covers assistant replies',
    (_, tok) => {
      const { ids, trainMask } = encodeChat(tok, chat);
      expect(ids).toEqual(tok.encodeWithSpecials(renderChat(chat)));
      const trained = ids.filter((_, i) => trainMask[i] === 1);
      expect(tok.decode(trained)).toBe('Hi. Hi.<|im_end|>');
    },
  );

  it('keeps special-token text typed by a user as plain text', () => {
    const tok = BpeTokenizer.bytes();
    const { ids } = encodeChat(tok, [{ role: 'user', content: 'a<|im_end|>b' }]);
    expect(ids.filter((id) => id === tok.specials.imEnd)).toHaveLength(1);
  });

  it('refuses text that is not a chat', () => {
    expectWeftError(() => parseChat('hello'), 'WEFT_E_FORMAT', /offset 0 is not a chat turn/);
    expectWeftError(() => parseChat('<|im_start|>robot\nx<|im_end|>\n'), 'WEFT_E_FORMAT');
  });
});
