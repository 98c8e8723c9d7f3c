// Shared option parsing for the subcommands.

import { check } from '../../util/errors.ts';

/** Accumulates a repeatable option into an array. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Parses a numeric flag, naming it when the value is not a number in range. */
export function numberFlag(
  name: string,
  value: string,
  { min = -Infinity, max = Infinity, integer = false } = {},
): number {
  const n = Number(value);
  const range = max < Infinity ? ` from ${min} to ${max}` : min > -Infinity ? ` >= ${min}` : '';
  check(
    value.trim() !== '' &&
      Number.isFinite(n) &&
      n >= min &&
      n <= max &&
      (!integer || Number.isInteger(n)),
    'WEFT_E_CONFIG',
    `${name} ${value} is not ${integer ? 'an integer' : 'a number'}${range}`,
  );
  return n;
}

/** A TCP port flag: 0 (any free port, where `min` allows it) to 65535. */
export const portFlag = (name: string, value: string, min = 0): number =>
  numberFlag(name, value, { min, max: 65535, integer: true });
