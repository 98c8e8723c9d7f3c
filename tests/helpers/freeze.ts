// Deep-freezing for tests of the pure state machines: a transition that changes the state it was
// given throws instead of passing silently.

/** Freezes `value` and everything it holds (a Map's set/delete/clear throw); typed arrays are left. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) return value;
  if (Object.isFrozen(value)) return value;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      deepFreeze(k);
      deepFreeze(v);
    }
    const refuse = () => {
      throw new TypeError('a state machine changed a Map of the state it was given');
    };
    Object.assign(value, { set: refuse, delete: refuse, clear: refuse });
  } else {
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return Object.freeze(value);
}
