// Asserts that a call fails with a WeftError of a given code and message.

import { expect } from 'vitest';
import type { WeftErrorCode } from '../../src/util/errors.ts';
import { WeftError } from '../../src/util/errors.ts';

/** `message` is matched exactly when a string, as a pattern when a RegExp. */
export function expectWeftError(
  run: () => unknown,
  code: WeftErrorCode,
  message?: string | RegExp,
): void {
  let caught: unknown = null;
  try {
    run();
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a WeftError to be thrown').toBeInstanceOf(WeftError);
  const err = caught as WeftError;
  expect(err.code).toBe(code);
  if (typeof message === 'string') expect(err.message).toBe(message);
  else if (message) expect(err.message).toMatch(message);
}
