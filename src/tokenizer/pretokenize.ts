// GPT-2's pre-tokenizer: text is split into words, numbers, punctuation runs and whitespace
// before byte-pair merging, so merges never cross these boundaries.

/** The split pattern of GPT-2 (tiktoken's r50k/gpt2 pat_str). */
export const GPT2_SPLIT_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const SPLIT = new RegExp(GPT2_SPLIT_PATTERN, 'gu');

/** The pieces of `text` in order; their concatenation is `text`. */
export function splitWords(text: string): string[] {
  return text.match(SPLIT) ?? [];
}
