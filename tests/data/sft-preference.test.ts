// SFT and preference sets on the bundled real data (GSM8K, self-instruct, hh-rlhf), with
// malformed records counted rather than fatal.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPreferences, parseTranscript, preferenceText } from '../../src/data/preference.ts';
import { SftLoader, loadSft, sftConversations } from '../../src/data/sft.ts';
import { BpeTokenizer } from '../../src/tokenizer/bpe.ts';
import { ROOT } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';

const tok = BpeTokenizer.bytes();
const data = (name: string) => join(ROOT, 'data', name);

describe('SFT sets', () => {
  it('reads GSM8K as user question / assistant answer without calculator annotations', () => {
    const [conv] = sftConversations({ question: 'What is 2+3?', answer: 'It is 2+3 = <<2+3=5>>5.\n#### 5' });
    expect(conv).toEqual([
      { role: 'user', content: 'What is 2+3?' },
      { role: 'assistant', content: 'It is 2+3 = 5.\n#### 5' },
    ]);
  });

  it('reads self-instruct tasks, appending a non-empty input to the instruction', () => {
    const [conv] = sftConversations({ instruction: 'Relate:', instances: [{ input: 'Night : Day', output: 'Opposites.' }] });
    expect(conv[0].content).toBe('Relate:\n\nNight : Day');
    expect(conv[1].content).toBe('Opposites.');
  });

  it('loads the bundled files and counts malformed records', () => {
    const gsm = loadSft(data('gsm8k-train.jsonl'), tok);
    expect(gsm.report).toEqual({ records: 7473, kept: 7473, skipped: {} });
    const seed = loadSft(data('self-instruct-seed-tasks.jsonl'), tok);
    expect(seed.report.kept).toBe(175);
    const dir = tempDir();
    const path = join(dir, 'mixed.jsonl');
    writeFileSync(
      path,
      [
        '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}',
        '{"messages":[{"role":"user","content":"no reply"}]}',
        '{"messages":[{"role":"robot","content":"x"}]}',
        'not json',
        '{"text":"unknown"}',
        '',
      ].join('\n'),
    );
    expect(loadSft(path, tok).report).toEqual({
      records: 5,
      kept: 1,
      skipped: {
        'no assistant message': 1,
        'bad message (role or content)': 1,
        'not valid JSON': 1,
        'unrecognised record shape': 1,
      },
    });
  });

  it('trains only on assistant tokens; pads and truncates to T', () => {
    const { examples } = loadSft(data('self-instruct-seed-tasks.jsonl'), tok);
    const loader = new SftLoader(examples, tok.specials.endOfText, 64, 4, 1);
    const { idx, targets } = loader.batch(0);
    for (let i = 0; i < idx.length; i++) {
      if (targets[i] === -1) continue;
      expect(targets[i]).toBe(i % 64 === 63 ? targets[i] : idx[i + 1]);
    }
    const short = new SftLoader(
      [{ ids: [1, 2, 3], trainMask: Uint8Array.from([0, 1, 1]) }],
      tok.specials.endOfText,
      5,
      1,
      1,
    );
    const b = short.batch(0);
    expect(Array.from(b.idx)).toEqual([1, 2, 3, 256, 256]);
    expect(Array.from(b.targets)).toEqual([2, 3, -1, -1, -1]);
  });
});

describe('preference sets', () => {
  it('parses hh-rlhf transcripts into turns', () => {
    expect(parseTranscript('\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye')).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
      { role: 'user', content: 'bye' },
    ]);
  });

  it('splits hh-rlhf pairs at the last assistant turn', () => {
    const [p] = preferenceText({
      chosen: '\n\nHuman: stores like old navy?\n\nAssistant: Gap, Target.',
      rejected: '\n\nHuman: stores like old navy?\n\nAssistant: Amazon?',
    });
    expect(p).toEqual({ prompt: [{ role: 'user', content: 'stores like old navy?' }], chosen: 'Gap, Target.', rejected: 'Amazon?' });
  });

  it('loads helpful-base and skips the degenerate records the data README lists', () => {
    const { pairs, report } = loadPreferences(data('hh-rlhf-helpful-base-test-rest.jsonl'), tok);
    expect(report.records).toBe(1807);
    expect(report.skipped).toEqual({ 'prompts differ': 7, 'chosen equals rejected': 2, 'empty reply': 3 });
    expect(pairs).toHaveLength(1807 - 12);
    const first = pairs[0];
    expect(tok.decode(first.prompt).endsWith('<|im_start|>assistant\n')).toBe(true);
    expect(first.chosen[first.chosen.length - 1]).toBe(tok.specials.imEnd);
  });

  it('accepts {prompt, chosen, rejected} records', () => {
    const [p] = preferenceText({ prompt: 'Capital of France?', chosen: 'Paris.', rejected: 'Lyon.' });
    expect(p.prompt).toEqual([{ role: 'user', content: 'Capital of France?' }]);
  });
});
