// Shared option parsing for the subcommands.

import { check } from '../../util/errors.ts';

/** Accumulates a repeatable option into an array. */
export const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** Parses a numeric flag, naming it when the value is not a number in range. */
export function numberFlag(
  name: string,
  value: string,
  { min = -Infinity, integer = false } = {},
): number {
  const n = Number(value);
  check(
    value.trim() !== '' && Number.isFinite(n) && n >= min && (!integer || Number.isInteger(n)),
    'WEFT_E_CONFIG',
    `${name} ${value} is not ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}`,
  );
  return n;
}
