// The checkpoint format (docs/design.md invariant 7). A run directory holds
//   checkpoints/step-NNNNNNNN/   model.safetensors      weights, Hugging Face GPT-2 names, fp32
//                                optimizer.safetensors  AdamW moments m/<name> and v/<name>, and
//                                                       its update count (metadata "steps")
//                                manifest.json          everything else, and every file's sha256
//   checkpoints/latest           the name of the newest complete checkpoint
// Files hold no timestamps or timings, so equal state gives byte-equal files.

export const CHECKPOINT_FORMAT = 'weft-checkpoint';
export const CHECKPOINT_VERSION = 1;
export const CHECKPOINTS_DIR = 'checkpoints';
export const LATEST_FILE = 'latest';
export const MANIFEST_FILE = 'manifest.json';
export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';

/** Directory name of the checkpoint after `step` optimizer steps. */
export function stepDirName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

export const STEP_DIR_PATTERN = /^step-(\d{8,})$/;

/** What a checkpoint holds besides its tensors. Config and tokenizer are stored as given. */
export interface CheckpointMeta {
  /** Optimizer steps completed. */
  step: number;
  tokensSeen: number;
  /** The run's resolved config (model keys fix the architecture). */
  config: Record<string, unknown> & {
    nLayer: number;
    nHead: number;
    nEmbd: number;
    blockSize: number;
    vocabSize: number;
  };
  /** The tokenizer's tokenizer.json object. */
  tokenizer: Record<string, unknown>;
  /** AdamW updates actually applied (skipped overflow steps do not count). */
  adamSteps: number;
  /** Where the data loader stands (resumes exactly). */
  loader: Record<string, unknown>;
  /** The run's random state: every generator derives from the seed and the step. */
  rng: { seed: number };
  /**
   * The dataset the run reads, and the sha256 of its dataset.json; a dpo run's also the sha256
   * of its reference model (reference.ts).
   */
  data: { path: string; manifestSha256: string; referenceSha256?: string };
  /** Deterministic metrics of the last step and evaluation. */
  metrics: Record<string, unknown>;
  /**
   * What the weights' bits depended on: the workers' kernels (kernels/backend.ts bitsIdentity,
   * e.g. 'blas (OpenBLAS 0.3.21 Zen, 1 thread)'); absent in checkpoints of older weft.
   */
  kernel?: string;
}

export interface CheckpointManifest extends CheckpointMeta {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  files: Record<string, { bytes: number; sha256: string }>;
}

export interface CheckpointState extends CheckpointMeta {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
}
