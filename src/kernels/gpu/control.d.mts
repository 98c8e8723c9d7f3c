// Types of control.mjs (the control block between the gpu backend and its device thread).

export declare const CONTROL_BYTES: number;
export declare function newControl(): SharedArrayBuffer;
export declare function replyTo(
  control: SharedArrayBuffer,
  seq: number,
  error: unknown,
  text?: string,
): void;
export declare function readReply(control: SharedArrayBuffer): { ok: boolean; text: string };
export declare function startFailed(error: unknown, data: { control: SharedArrayBuffer }): void;
