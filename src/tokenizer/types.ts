// The tokenizer interface shared by every kind (gpt2, bpe:N, byte), the special tokens, and the
// serialised form saved with every run and dataset as tokenizer.json.

/** Special tokens every weft tokenizer has, after its ordinary vocabulary. */
export const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
export type SpecialToken = (typeof SPECIAL_TOKENS)[number];

export interface SpecialIds {
  endOfText: number;
  imStart: number;
  imEnd: number;
}

export type TokenizerJSON =
  | { format: 'weft-tokenizer'; version: 1; kind: 'gpt2' }
  | { format: 'weft-tokenizer'; version: 1; kind: 'byte' }
  | { format: 'weft-tokenizer'; version: 1; kind: 'bpe'; merges: number[] };

export interface Tokenizer {
  /** 'gpt2', 'byte' or 'bpe:N' (N = ordinary tokens: 256 bytes + merges). */
  readonly name: string;
  /** Every id the tokenizer can produce is below this (ordinary tokens and specials). */
  readonly vocabSize: number;
  readonly specials: SpecialIds;
  /** Plain text to ids; special-token strings in the text are encoded as ordinary text. */
  encode(text: string): number[];
  /** Like encode, but the strings of SPECIAL_TOKENS become their ids. */
  encodeWithSpecials(text: string): number[];
  /** Ids to text; invalid UTF-8 (a split multi-byte character) decodes to U+FFFD. */
  decode(ids: ArrayLike<number>): string;
  /** The bytes token `id` decodes to (a special decodes to its own text). */
  bytesOf(id: number): Uint8Array;
  /** UTF-8 bytes a token stands for (0 for specials): the denominator of bits per byte. */
  byteLength(id: number): number;
  toJSON(): TokenizerJSON;
}

/** Text from ids given one at a time, in pieces that never split a character. */
export interface StreamDecoder {
  /** The text token `id` completes ('' for a special, or while a character is incomplete). */
  (id: number): string;
  /** At the end: the bytes still held, as U+FFFD (a character that never completed), or ''. */
  flush(): string;
}

/**
 * Decodes ids one at a time, holding back the bytes of a multi-byte character until it is
 * complete, so no piece ever shows U+FFFD for a character still arriving. Special tokens are not
 * text: they give '' and leave held bytes held. U+FFFD marks only bytes that are truly invalid.
 */
export function streamDecoder(tokenizer: Tokenizer): StreamDecoder {
  // ignoreBOM: a generated U+FEFF is text like any other, not a marker to drop
  const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
  const { endOfText, imStart, imEnd } = tokenizer.specials;
  const specials = new Set([endOfText, imStart, imEnd]);
  const decode = (id: number) =>
    specials.has(id) ? '' : decoder.decode(tokenizer.bytesOf(id), { stream: true });
  return Object.assign(decode, { flush: () => decoder.decode() });
}
