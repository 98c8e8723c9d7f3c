// The control block between the gpu backend (bridge.ts) and its device thread, in one place for
// both sides (plain JavaScript, so the thread's entry can use it before TypeScript loads).
//
// Int32 view of a SharedArrayBuffer of CONTROL_BYTES: [0] number of the last answered request
// (-1 until the device is open), [1] 0 ok / 1 error, [2] length of the text that follows; from
// byte 16 the text (the device mode when opening, else the error message), at most TEXT_BYTES.

const TEXT_AT = 16;
const TEXT_BYTES = 4096;
export const CONTROL_BYTES = TEXT_AT + TEXT_BYTES;

/** A new control block: no request answered, the device not open. */
export function newControl() {
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  new Int32Array(control)[0] = -1;
  return control;
}

/** Device thread side: answers request `seq` with an error, or with `text`; wakes the backend. */
export function replyTo(control, seq, error, text = '') {
  const c = new Int32Array(control);
  const message =
    error === null ? text : error instanceof Error ? error.message : JSON.stringify(error);
  const bytes = new TextEncoder().encode(message).subarray(0, TEXT_BYTES);
  new Uint8Array(control, TEXT_AT, TEXT_BYTES).set(bytes);
  Atomics.store(c, 1, error === null ? 0 : 1);
  Atomics.store(c, 2, bytes.length);
  Atomics.store(c, 0, seq);
  Atomics.notify(c, 0);
}

/** Backend side: the last answer, once control[0] says it has come. */
export function readReply(control) {
  const c = new Int32Array(control);
  const text = new TextDecoder().decode(
    new Uint8Array(control, TEXT_AT, Atomics.load(c, 2)).slice(),
  );
  return { ok: Atomics.load(c, 1) === 0, text };
}

/** The thread's entry could not load the device thread: answer the backend's wait for it. */
export function startFailed(error, data) {
  replyTo(data.control, 0, error);
}
