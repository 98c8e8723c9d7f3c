// Token files: round trips in both widths, and refusal of damaged files.

import { describe, expect, it } from 'vitest';
import { decodeTokenFile, encodeTokenFile } from '../../src/data/token-file.ts';
import { expectWeftError } from '../helpers/errors.ts';

describe('token files', () => {
  it('round-trips uint16 and uint32 ids', () => {
    const small = decodeTokenFile(encodeTokenFile([0, 1, 65535], 65536));
    expect(small).toBeInstanceOf(Uint16Array);
    expect(Array.from(small)).toEqual([0, 1, 65535]);
    const wide = decodeTokenFile(encodeTokenFile([0, 70000, 50256], 70001));
    expect(wide).toBeInstanceOf(Uint32Array);
    expect(Array.from(wide)).toEqual([0, 70000, 50256]);
  });

  it('writes a 32-byte header: magic, version, width, count', () => {
    const bytes = encodeTokenFile([5, 6], 100);
    expect(Buffer.from(bytes.subarray(0, 8)).toString()).toBe('WEFTTOKS');
    const view = new DataView(bytes.buffer);
    expect([view.getUint32(8, true), view.getUint32(12, true), Number(view.getBigUint64(16, true))]).toEqual([1, 2, 2]);
    expect(bytes.length).toBe(32 + 4);
  });

  it('refuses damaged files, naming the problem', () => {
    const good = encodeTokenFile([1, 2, 3], 100);
    expectWeftError(() => decodeTokenFile(good.subarray(0, 20), 'a.bin'), 'WEFT_E_FORMAT', /a\.bin: 20 bytes is shorter/);
    expectWeftError(() => decodeTokenFile(good.subarray(0, good.length - 1), 'a.bin'), 'WEFT_E_FORMAT', /header says 3 tokens \(38 bytes\) but the file has 37 bytes/);
    const badMagic = good.slice();
    badMagic[0] = 0x58;
    expectWeftError(() => decodeTokenFile(badMagic), 'WEFT_E_FORMAT', /not a weft token file/);
    const newer = good.slice();
    newer[8] = 9;
    expectWeftError(() => decodeTokenFile(newer), 'WEFT_E_FORMAT', /version 9; this weft reads version 1/);
  });
});
