// The handshake every link starts with, as pure functions over messages:
//   server -> client  challenge {nonce: server nonce, auth: whether a shared secret is required}
//   client -> server  hello {name, role, nonce: client nonce, proof}
//   server -> client  welcome {proof}   (or reject {code, message}, then close)
// With a shared secret, proof = HMAC-SHA256(secret, "weft-auth-v1:<who>:<server nonce>:<client
// nonce>") in both directions, so each side shows it knows the secret without sending it, and
// neither proof can be replayed on another connection. Nothing but the handshake is accepted
// before it completes, and no frame larger than its messages need (Limits.maxHandshakeFrameBytes;
// transport.ts lifts that limit through Connection.authenticated once a proof checks out).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Message, MessageOf } from '../messages.ts';
import { msg } from '../messages.ts';

export type Role = MessageOf<'hello'>['role'];

export function newNonce(): string {
  return randomBytes(16).toString('hex');
}

function proof(
  secret: string,
  who: 'client' | 'server',
  serverNonce: string,
  clientNonce: string,
): string {
  return createHmac('sha256', secret)
    .update(`weft-auth-v1:${who}:${serverNonce}:${clientNonce}`)
    .digest('hex');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function challenge(serverNonce: string, secret: string | null): MessageOf<'challenge'> {
  return msg('challenge', { nonce: serverNonce, auth: secret !== null });
}

export type HandshakeResult<T> =
  | { ok: true; value: T; reply: Message }
  | { ok: false; code: 'WEFT_E_AUTH' | 'WEFT_E_PROTOCOL'; message: string };

/** Server side: checks the client's hello; on success the reply is welcome, else reject. */
export function acceptHello(
  hello: Message,
  serverNonce: string,
  secret: string | null,
  role: Role,
): HandshakeResult<MessageOf<'hello'>> {
  if (hello.t !== 'hello')
    return { ok: false, code: 'WEFT_E_PROTOCOL', message: `expected hello, got ${hello.t}` };
  if (hello.role !== role)
    return {
      ok: false,
      code: 'WEFT_E_PROTOCOL',
      message: `expected a ${role}, got a ${hello.role}`,
    };
  if (secret !== null) {
    if (hello.proof === '') {
      return {
        ok: false,
        code: 'WEFT_E_AUTH',
        message: 'this coordinator requires a token; pass --token-file FILE or set WEFT_TOKEN',
      };
    }
    if (!same(hello.proof, proof(secret, 'client', serverNonce, hello.nonce))) {
      return {
        ok: false,
        code: 'WEFT_E_AUTH',
        message: "wrong token: the shared secret does not match the coordinator's",
      };
    }
  }
  const welcome = msg('welcome', {
    proof: secret === null ? '' : proof(secret, 'server', serverNonce, hello.nonce),
  });
  return { ok: true, value: hello, reply: welcome };
}

/** Client side: answers the challenge; fails here when the server wants a secret we lack. */
export function answerChallenge(
  challengeMsg: Message,
  clientNonce: string,
  secret: string | null,
  fields: Omit<MessageOf<'hello'>, 'v' | 't' | 'nonce' | 'proof'>,
): HandshakeResult<{ serverNonce: string }> {
  if (challengeMsg.t === 'reject')
    return {
      ok: false,
      code: challengeMsg.code === 'WEFT_E_AUTH' ? 'WEFT_E_AUTH' : 'WEFT_E_PROTOCOL',
      message: challengeMsg.message,
    };
  if (challengeMsg.t !== 'challenge')
    return {
      ok: false,
      code: 'WEFT_E_PROTOCOL',
      message: `expected challenge, got ${challengeMsg.t}`,
    };
  if (challengeMsg.auth && secret === null) {
    return {
      ok: false,
      code: 'WEFT_E_AUTH',
      message: 'the coordinator requires a token; pass --token-file FILE or set WEFT_TOKEN',
    };
  }
  const serverNonce = challengeMsg.nonce;
  const hello = msg('hello', {
    ...fields,
    nonce: clientNonce,
    proof: secret === null ? '' : proof(secret, 'client', serverNonce, clientNonce),
  });
  return { ok: true, value: { serverNonce }, reply: hello };
}

/** Client side: checks the server's welcome (its proof, when we hold a secret). */
export function checkWelcome(
  welcome: Message,
  serverNonce: string,
  clientNonce: string,
  secret: string | null,
): HandshakeResult<null> {
  if (welcome.t === 'reject')
    return {
      ok: false,
      code: welcome.code === 'WEFT_E_AUTH' ? 'WEFT_E_AUTH' : 'WEFT_E_PROTOCOL',
      message: welcome.message,
    };
  if (welcome.t !== 'welcome')
    return { ok: false, code: 'WEFT_E_PROTOCOL', message: `expected welcome, got ${welcome.t}` };
  if (
    secret !== null &&
    welcome.proof !== '' &&
    !same(welcome.proof, proof(secret, 'server', serverNonce, clientNonce))
  ) {
    return {
      ok: false,
      code: 'WEFT_E_AUTH',
      message:
        'the coordinator could not prove it knows the token (wrong token on the coordinator?)',
    };
  }
  return { ok: true, value: null, reply: welcome };
}
