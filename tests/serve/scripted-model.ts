// A real checkpoint whose model says exactly what a test scripts: a byte-tokenizer GPT-2 whose
// blocks add nothing (all zero) and whose embeddings are one-hot, so greedy decoding picks, at
// position p, the token wpe[p] points at. Tokens that split UTF-8 characters, specials in the
// middle of text, and endings inside a character can then go through the real load, decode and
// HTTP paths.

import { join } from 'node:path';
import { writeCheckpoint } from '../../src/checkpoint/write.ts';
import { GPT2 } from '../../src/model/gpt2.ts';
import { encodeChat } from '../../src/tokenizer/chat.ts';
import { createTokenizer } from '../../src/tokenizer/index.ts';

export const byteTokenizer = createTokenizer('byte');
/** The byte tokenizer's ids of `text`, for building scripts. */
export const bytesOf = (text: string) => byteTokenizer.encode(text);

/** The prompt ids of one user turn and an open assistant turn (as the server renders it). */
export const userPrompt = (content: string) =>
  encodeChat(byteTokenizer, [{ role: 'user', content }], true).ids;

const BLOCK_SIZE = 128;
/** How far the scripted token's channel stands above the current token's (logit margin). */
const LEAD = 10;

/**
 * Writes checkpoint step 1 of run directory `dir/runName` (config name `configName`): after a
 * prompt of `promptLength` tokens, greedy decoding yields `script`, one id per position.
 */
export async function scriptedRun(
  dir: string,
  runName: string,
  configName: string,
  promptLength: number,
  script: number[],
): Promise<string> {
  const V = byteTokenizer.vocabSize;
  const C = Math.ceil(V / 4) * 4;
  const config = {
    name: configName,
    nLayer: 1,
    nHead: 4,
    nEmbd: C,
    blockSize: BLOCK_SIZE,
    vocabSize: V,
  };
  if (promptLength + script.length > BLOCK_SIZE) throw new Error('script longer than the context');
  const model = new GPT2(config);
  for (let v = 0; v < V; v++) model.p.wte[v * C + v] = 1;
  // the logits at position p choose the token at p + 1
  script.forEach((id, i) => (model.p.wpe[(promptLength - 1 + i) * C + id] = LEAD));
  model.p.lnfw.fill(1);
  const run = join(dir, runName);
  const zeros = new Float32Array(model.params.length);
  await writeCheckpoint(run, {
    step: 1,
    tokensSeen: 0,
    config,
    tokenizer: byteTokenizer.toJSON(),
    adamSteps: 0,
    loader: {},
    rng: { seed: 0 },
    data: { path: '', manifestSha256: '' },
    metrics: {},
    params: model.params,
    m: zeros,
    v: zeros,
  });
  return run;
}
