// A piece of the reduce-scatter's exact partial sums as it arrives on the wire in 32 bits
// (chunk-frame.ts): the int32 values, ESCAPE where a value did not fit, and the escaped values
// in order as float64. Added straight into the sums (addInto) instead of first being decoded into
// a Float64Array of its own: one pass over the bytes, no allocation per piece.

export const ESCAPE = -(2 ** 31);

export class CompactSums {
  /**
   * `ints` with exactly `escapes.length` ESCAPE markers (the caller has counted them: a frame's
   * decoder, which refuses any other count).
   */
  constructor(
    readonly ints: Int32Array,
    readonly escapes: Float64Array,
  ) {}

  get length(): number {
    return this.ints.length;
  }

  /** target[at + i] += value i, for every value. */
  addInto(target: Float64Array, at: number): void {
    const { ints, escapes } = this;
    let next = 0;
    for (let i = 0; i < ints.length; i++) {
      const v = ints[i];
      target[at + i] += v !== ESCAPE ? v : escapes[next++];
    }
  }

  /** The values as float64. */
  toFloat64(): Float64Array {
    const { ints, escapes } = this;
    const out = new Float64Array(ints.length);
    let next = 0;
    for (let i = 0; i < ints.length; i++) out[i] = ints[i] !== ESCAPE ? ints[i] : escapes[next++];
    return out;
  }

  /** A copy that owns its memory. */
  slice(): CompactSums {
    return new CompactSums(this.ints.slice(), this.escapes.slice());
  }

  /** Markers in `ints` (what a decoder checks against the escapes it was sent). */
  static countEscapes(ints: Int32Array): number {
    let n = 0;
    for (let i = 0; i < ints.length; i++) if (ints[i] === ESCAPE) n++;
    return n;
  }
}
