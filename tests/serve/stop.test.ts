// The stop-sequence matcher: text that may begin a stop sequence is held back until it cannot,
// a stop found across pieces cuts the text before it, and the earliest of several wins.

import { describe, expect, it } from 'vitest';
import { StopMatcher } from '../../src/serve/complete.ts';

function run(stops: string[], pieces: string[]) {
  const m = new StopMatcher(stops);
  let out = '';
  for (const piece of pieces) {
    const { emit, stop } = m.push(piece);
    out += emit;
    if (stop !== null) return { out, stop };
  }
  return { out: out + m.flush(), stop: null };
}

describe('StopMatcher', () => {
  it('passes text through when nothing matches', () => {
    expect(run(['END'], ['ab', 'cd'])).toEqual({ out: 'abcd', stop: null });
  });

  it('holds back a possible start and cuts at a stop split across pieces', () => {
    const m = new StopMatcher(['\n\nUser:']);
    expect(m.push('Hello\n')).toEqual({ emit: 'Hello', stop: null });
    expect(m.push('\nUs')).toEqual({ emit: '', stop: null });
    expect(m.push('er: hi')).toEqual({ emit: '', stop: '\n\nUser:' });
  });

  it('releases held text once it cannot start a stop', () => {
    const m = new StopMatcher(['abc']);
    expect(m.push('xab')).toEqual({ emit: 'x', stop: null });
    expect(m.push('d')).toEqual({ emit: 'abd', stop: null });
    expect(m.flush()).toBe('');
  });

  it('picks the earliest stop, and flushes held text at the end', () => {
    expect(run(['cd', 'b'], ['abcd'])).toEqual({ out: 'a', stop: 'b' });
    expect(run(['xyz'], ['abx', 'y'])).toEqual({ out: 'abxy', stop: null });
  });
});
