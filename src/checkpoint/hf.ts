// Hugging Face GPT-2 directories, in and out. Export writes what GPT2LMHeadModel.from_pretrained
// loads: model.safetensors with transformer.-prefixed names (the LM head is tied to wte, so it is
// left out, as Hugging Face itself saves it) and a GPT2Config config.json; our tokenizer.json goes
// beside it as weft-tokenizer.json. Import reads such a directory, real GPT-2 124M included
// (names with or without the transformer. prefix; lm_head.weight and the attention-mask buffers
// are ignored), and writes a step-0 checkpoint that eval, generate and fine-tuning start from.

import { existsSync, renameSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { GPTConfig } from '../model/config.ts';
import { scoreLabels, validateConfig } from '../model/config.ts';
import { GPT2 } from '../model/gpt2.ts';
import { namedTensors } from '../model/layout.ts';
import { BpeTokenizer } from '../tokenizer/bpe.ts';
import { tokenizerFromJSON } from '../tokenizer/index.ts';
import { WeftError } from '../util/errors.ts';
import { readBytes, readJson, writeFileAtomic } from '../util/files.ts';
import type { CheckpointState } from './format.ts';
import { CHECKPOINTS_DIR, MODEL_FILE } from './format.ts';
import { checkOutDir, writeDirAtomic } from './out-dir.ts';
import { loadCheckpoint } from './read.ts';
import { lockRunDir } from './run-lock.ts';
import type { SafeTensors } from './safetensors.ts';
import { getFloat32, readSafetensors, writeSafetensors } from './safetensors.ts';
import { loadWeights, weightTensors } from './weights.ts';
import { writeCheckpoint } from './write.ts';

const PREFIX = 'transformer.';
const SCORE = 'score.weight';
export const WEFT_TOKENIZER_FILE = 'weft-tokenizer.json';

/**
 * Hugging Face's GPT2Config for a weft model: GPT2LMHeadModel, or for a reward model
 * GPT2ForSequenceClassification with one label (its pad token, which marks where a padded
 * sequence ends, is <|endoftext|>, the padding weft uses).
 */
export function hfConfig(config: GPTConfig, endOfText: number): Record<string, unknown> {
  const reward = scoreLabels(config) > 0;
  return {
    architectures: [reward ? 'GPT2ForSequenceClassification' : 'GPT2LMHeadModel'],
    ...(reward
      ? {
          num_labels: 1,
          id2label: { 0: 'LABEL_0' },
          label2id: { LABEL_0: 0 },
          pad_token_id: endOfText,
        }
      : {}),
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.blockSize,
    n_ctx: config.blockSize,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: null,
    activation_function: 'gelu_new',
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    layer_norm_epsilon: 1e-5,
    initializer_range: 0.02,
    bos_token_id: endOfText,
    eos_token_id: endOfText,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
}

/**
 * Writes checkpoint `path` as a Hugging Face GPT-2 directory `outDir`, which must be new or empty
 * (out-dir.ts), whole: into a temporary directory renamed to `outDir` once every file is written.
 */
export function exportHf(path: string, outDir: string): string {
  checkOutDir(outDir, 'export');
  const state = loadCheckpoint(path);
  const config = state.config;
  const tokenizer = tokenizerFromJSON(state.tokenizer);
  writeDirAtomic(outDir, (dir) => {
    writeFileAtomic(
      join(dir, MODEL_FILE),
      writeSafetensors(
        // the score head sits beside the transformer, as in GPT2ForSequenceClassification
        weightTensors(state.params, config, PREFIX).map((t) =>
          t.name === `${PREFIX}${SCORE}` ? { ...t, name: SCORE } : t,
        ),
        { format: 'pt' },
      ),
    );
    writeFileAtomic(
      join(dir, 'config.json'),
      `${JSON.stringify(hfConfig(config, tokenizer.specials.endOfText), null, 2)}\n`,
    );
    writeFileAtomic(join(dir, WEFT_TOKENIZER_FILE), `${JSON.stringify(state.tokenizer)}\n`);
  });
  return outDir;
}

/** The weft model config of a Hugging Face GPT2Config. */
function configFromHf(hf: Record<string, unknown>, source: string): GPTConfig {
  const need = (key: string) => {
    const value = hf[key];
    if (typeof value !== 'number')
      throw new WeftError('WEFT_E_FORMAT', `${source} has no numeric ${key}`);
    return value;
  };
  if (hf.model_type !== undefined && hf.model_type !== 'gpt2') {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${source} describes a ${JSON.stringify(hf.model_type)} model; weft imports gpt2`,
    );
  }
  const act = hf.activation_function;
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${source} uses activation ${JSON.stringify(act)}; weft's GPT-2 uses the tanh GELU (gelu_new)`,
    );
  }
  if (hf.n_inner !== undefined && hf.n_inner !== null && hf.n_inner !== 4 * need('n_embd')) {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${source} has n_inner=${JSON.stringify(hf.n_inner)}; weft's GPT-2 MLP is 4 x n_embd`,
    );
  }
  return validateConfig({
    nLayer: need('n_layer'),
    nHead: need('n_head'),
    nEmbd: need('n_embd'),
    blockSize: need('n_positions'),
    vocabSize: need('vocab_size'),
  });
}

/** Names in the file: with or without the transformer. prefix (both occur in the wild). */
function prefixOf(st: SafeTensors, source: string): string {
  if (st.tensors.has(`${PREFIX}wte.weight`)) return PREFIX;
  if (st.tensors.has('wte.weight')) return '';
  throw new WeftError(
    'WEFT_E_FORMAT',
    `${source} has no wte.weight (nor ${PREFIX}wte.weight): not a GPT-2 checkpoint`,
  );
}

/** Whether `dir` looks like a Hugging Face model directory (config.json and model.safetensors). */
export function isHfDir(dir: string): boolean {
  return existsSync(join(dir, 'config.json')) && existsSync(join(dir, MODEL_FILE));
}

/** The weights, config and tokenizer of Hugging Face GPT-2 directory `hfDir`, after every check. */
export function readHf(hfDir: string): {
  config: GPTConfig;
  params: Float32Array;
  tokenizerJson: Record<string, unknown>;
} {
  const configPath = join(hfDir, 'config.json');
  const modelPath = join(hfDir, MODEL_FILE);
  const config = configFromHf(
    readJson(configPath, 'Hugging Face config') as Record<string, unknown>,
    configPath,
  );
  const st = readSafetensors(readBytes(modelPath, 'Hugging Face weights'), modelPath);
  const prefix = prefixOf(st, modelPath);
  for (const t of namedTensors(config)) {
    const entry = st.tensors.get(prefix + t.name);
    if (entry && entry.dtype !== 'F32') {
      throw new WeftError(
        'WEFT_E_FORMAT',
        `${modelPath}: tensor ${prefix + t.name} is ${entry.dtype}; weft imports F32 weights`,
      );
    }
  }
  const trunk = new GPT2(config).params;
  loadWeights(trunk, config, st, prefix, modelPath); // checks every name and shape
  // a GPT2ForSequenceClassification with one label: a reward model (its score.weight, unprefixed)
  const score = st.tensors.get(SCORE);
  if (score && score.dtype === 'F32' && score.shape.join(',') === `1,${config.nEmbd}`)
    config.objective = 'reward';
  const params = new GPT2(config).params;
  params.set(trunk);
  if (config.objective === 'reward') params.set(getFloat32(st, SCORE, modelPath), trunk.length);

  const tokenizerPath = join(hfDir, WEFT_TOKENIZER_FILE);
  let tokenizerJson: Record<string, unknown>;
  if (existsSync(tokenizerPath)) {
    tokenizerJson = readJson(tokenizerPath, 'tokenizer') as Record<string, unknown>;
    tokenizerFromJSON(tokenizerJson, tokenizerPath);
  } else if (config.vocabSize === 50257) {
    tokenizerJson = BpeTokenizer.gpt2().toJSON();
  } else {
    throw new WeftError(
      'WEFT_E_FORMAT',
      `${hfDir} has no ${WEFT_TOKENIZER_FILE} and vocab_size ${config.vocabSize} is not GPT-2's 50257; weft cannot tell its tokenizer`,
    );
  }
  return { config, params, tokenizerJson };
}

/**
 * Imports Hugging Face GPT-2 directory `hfDir` as run directory `runDir` (a step-0 checkpoint).
 * `runDir` must be new or empty unless `overwrite` (out-dir.ts); with it, as weft train
 * --overwrite, the run's earlier checkpoints go only once the model has been read and checked and
 * the run is locked (no trainer is using it).
 */
export async function importHf(hfDir: string, runDir: string, overwrite = false): Promise<string> {
  checkOutDir(runDir, 'import', overwrite);
  const { config, params, tokenizerJson } = readHf(hfDir);
  const zeros = new Float32Array(params.length);
  const state: CheckpointState = {
    step: 0,
    tokensSeen: 0,
    config: { name: basename(runDir), ...config, seqLen: config.blockSize },
    tokenizer: tokenizerJson,
    adamSteps: 0,
    loader: {},
    rng: { seed: 0 },
    data: { path: '', manifestSha256: '' },
    metrics: {},
    params,
    m: zeros,
    v: zeros,
  };
  const existed = existsSync(runDir);
  const lock = lockRunDir(runDir);
  // the earlier checkpoints are set aside, and removed only once the new one is written
  const checkpoints = join(runDir, CHECKPOINTS_DIR);
  const aside = `${checkpoints}.replaced-${process.pid}`;
  const replacing = overwrite && existsSync(checkpoints);
  try {
    if (replacing) renameSync(checkpoints, aside);
    const written = await writeCheckpoint(runDir, state);
    if (replacing) rmSync(aside, { recursive: true, force: true });
    return written;
  } catch (err) {
    if (replacing) {
      rmSync(checkpoints, { recursive: true, force: true });
      renameSync(aside, checkpoints);
    }
    if (!existed) rmSync(runDir, { recursive: true, force: true });
    throw err;
  } finally {
    lock.release();
  }
}
