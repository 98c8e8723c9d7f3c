// Text completion over token generation: decodes as it samples, ends at <|endoftext|> or
// <|im_end|> (end_turn), at max tokens, or at the first stop sequence (cut from the text), and
// streams text deltas. A delta never splits a character (the decoder holds a character's bytes
// until it completes; special tokens are not text), and never holds text that could still turn
// out to be the start of a stop sequence. It yields to the event loop after every token, so a
// server keeps flushing other streams and notices a client that went away (the AbortSignal),
// which ends generation.

import type { GPT2 } from '../model/gpt2.ts';
import type { SamplingOptions } from '../model/generate.ts';
import { checkSampling, nextLogits, sampleLogits } from '../model/generate.ts';
import type { Tokenizer } from '../tokenizer/types.ts';
import { streamDecoder } from '../tokenizer/types.ts';
import { Rng } from '../util/rng.ts';

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence';

export interface CompletionOptions extends SamplingOptions {
  maxTokens: number;
  stopSequences?: string[];
  /** Called with each piece of text as it becomes final. */
  onText?: (delta: string) => void;
  signal?: AbortSignal;
  /** Decode with a KV cache (default true). */
  cache?: boolean;
}

export interface Completion {
  text: string;
  stopReason: StopReason;
  stopSequence: string | null;
  inputTokens: number;
  outputTokens: number;
}

/** Holds back text that may begin a stop sequence; finds the first complete one. */
export class StopMatcher {
  private pending = '';

  constructor(private readonly stops: string[]) {}

  /** Adds text; returns what is safe to emit, and the stop sequence if one has completed. */
  push(text: string): { emit: string; stop: string | null } {
    this.pending += text;
    let first = -1;
    let stop: string | null = null;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) [first, stop] = [at, s];
    }
    if (stop !== null) {
      const emit = this.pending.slice(0, first);
      this.pending = '';
      return { emit, stop };
    }
    const hold = this.heldBack();
    const emit = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return { emit, stop: null };
  }

  /** The rest, at the end of generation. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** Length of the longest suffix of pending that is a proper prefix of a stop sequence. */
  private heldBack(): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > best; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function complete(
  model: GPT2,
  tokenizer: Tokenizer,
  prompt: number[],
  options: CompletionOptions,
): Promise<Completion> {
  checkSampling(options);
  const { endOfText, imEnd } = tokenizer.specials;
  const decode = streamDecoder(tokenizer);
  const matcher = new StopMatcher((options.stopSequences ?? []).filter((s) => s.length > 0));
  const rng = new Rng(options.seed, 2);
  const next = nextLogits(model, prompt, options.cache ?? true);
  let text = '';
  const emit = (delta: string) => {
    if (delta.length === 0) return;
    text += delta;
    options.onText?.(delta);
  };
  const result = (stopReason: StopReason, stopSequence: string | null, outputTokens: number) => ({
    text,
    stopReason,
    stopSequence,
    inputTokens: prompt.length,
    outputTokens,
  });
  /** Emits what of `piece` the stop matcher lets through; the stop sequence if one completed. */
  const take = (piece: string): string | null => {
    const { emit: safe, stop } = matcher.push(piece);
    emit(safe);
    return stop;
  };
  /** The end: the bytes the decoder still holds, then the text the matcher held back. */
  const finish = (stopReason: StopReason, n: number) => {
    const stop = take(decode.flush());
    if (stop !== null) return result('stop_sequence', stop, n);
    emit(matcher.flush());
    return result(stopReason, null, n);
  };
  try {
    let logits = next.first();
    let produced = 0;
    for (let n = 1; n <= options.maxTokens; n++) {
      const id = sampleLogits(logits, options.temperature, options.topK, rng, options.topP);
      produced = n;
      if (id === endOfText || id === imEnd) return finish('end_turn', n);
      const stop = take(decode(id));
      if (stop !== null) return result('stop_sequence', stop, n);
      await nextTick();
      if (options.signal?.aborted || n === options.maxTokens) break;
      logits = next.after(id);
    }
    return finish('max_tokens', produced);
  } finally {
    next.dispose();
  }
}
