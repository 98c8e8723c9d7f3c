// Byte-level BPE training with incremental pair counts. The corpus is pre-split as GPT-2 does and
// reduced to unique words with counts; each merge rewrites only the words that contain the chosen
// pair and adjusts the pair counts they contribute, with a max-heap (lazy deletion) to find the
// next most frequent pair. Ties go to the smaller (a, b), so one corpus gives one vocabulary.

import { check } from '../util/errors.ts';
import { splitWords } from './pretokenize.ts';

const SHIFT = 1048576; // ids stay below 2^20
const key = (a: number, b: number) => a * SHIFT + b;

/** Max-heap of [count, pairKey], largest count first, then smallest key. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  push(count: number, pair: number): void {
    this.counts.push(count);
    this.keys.push(pair);
    let i = this.counts.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): [number, number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastCount = this.counts.pop() as number;
    const lastKey = this.keys.pop() as number;
    if (this.counts.length > 0) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.counts.length && this.before(l, m)) m = l;
        if (r < this.counts.length && this.before(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }

  private before(i: number, j: number): boolean {
    return (
      this.counts[i] > this.counts[j] ||
      (this.counts[i] === this.counts[j] && this.keys[i] < this.keys[j])
    );
  }

  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
}

/**
 * Learns up to `vocabSize - 256` merges from `text`; returns them flat as [a0, b0, a1, b1, ...]
 * (merge i produces id 256 + i). Stops early when no pair occurs twice.
 */
export function trainBpe(text: string, vocabSize: number): number[] {
  check(
    Number.isSafeInteger(vocabSize) && vocabSize >= 256 && vocabSize < SHIFT,
    'WEFT_E_CONFIG',
    `BPE vocabulary size ${vocabSize} must be an integer from 256 to ${SHIFT - 1}`,
  );
  const wordCounts = new Map<string, number>();
  for (const word of splitWords(text)) wordCounts.set(word, (wordCounts.get(word) ?? 0) + 1);
  const encoder = new TextEncoder();
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [word, count] of wordCounts) {
    words.push(Array.from(encoder.encode(word)));
    freq.push(count);
  }

  const pairCounts = new Map<number, number>();
  const wordsWith = new Map<number, Set<number>>(); // pair -> words that contained it (superset)
  const addPairs = (w: number, sign: number) => {
    const ids = words[w];
    for (let i = 0; i + 1 < ids.length; i++) {
      const k = key(ids[i], ids[i + 1]);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + sign * freq[w]);
      if (sign > 0) {
        let set = wordsWith.get(k);
        if (!set) wordsWith.set(k, (set = new Set()));
        set.add(w);
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);
  const heap = new PairHeap();
  for (const [k, count] of pairCounts) heap.push(count, k);

  const merges: number[] = [];
  while (256 + merges.length / 2 < vocabSize && heap.size > 0) {
    const [count, k] = heap.pop();
    if (pairCounts.get(k) !== count) continue; // stale entry
    if (count < 2) break;
    const a = Math.floor(k / SHIFT);
    const b = k % SHIFT;
    const id = 256 + merges.length / 2;
    merges.push(a, b);
    const touched = new Set<number>();
    for (const w of wordsWith.get(k) ?? []) {
      const ids = words[w];
      if (!hasPair(ids, a, b)) continue;
      addPairs(w, -1);
      words[w] = mergePair(ids, a, b, id);
      addPairs(w, 1);
      for (let i = 0; i + 1 < words[w].length; i++) touched.add(key(words[w][i], words[w][i + 1]));
      for (let i = 0; i + 1 < ids.length; i++) touched.add(key(ids[i], ids[i + 1]));
    }
    wordsWith.delete(k);
    for (const t of touched) {
      const c = pairCounts.get(t) ?? 0;
      if (c > 0) heap.push(c, t);
      else pairCounts.delete(t);
    }
  }
  return merges;
}

function hasPair(ids: number[], a: number, b: number): boolean {
  for (let i = 0; i + 1 < ids.length; i++) if (ids[i] === a && ids[i + 1] === b) return true;
  return false;
}

/** `ids` with every non-overlapping (a, b), left to right, replaced by `id`. */
function mergePair(ids: number[], a: number, b: number, id: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    if (i + 1 < ids.length && ids[i] === a && ids[i + 1] === b) {
      out.push(id);
      i++;
    } else {
      out.push(ids[i]);
    }
  }
  return out;
}
