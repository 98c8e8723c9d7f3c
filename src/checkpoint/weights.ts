// GPT-2 weights <-> safetensors tensors under Hugging Face names (h.0.attn.c_attn.weight, ...),
// with shapes checked against the config, so a file built for another architecture is refused.

import type { GPTConfig } from '../model/config.ts';
import { namedTensors } from '../model/layout.ts';
import { WeftError } from '../util/errors.ts';
import type { SafeTensors, TensorToWrite } from './safetensors.ts';
import { getFloat32 } from './safetensors.ts';

/**
 * Copies every GPT-2 tensor named `prefix + <hf name>` from `st` into the flat buffer `params`.
 * Throws WEFT_E_FORMAT naming the first missing tensor or wrong shape.
 */
export function loadWeights(
  params: Float32Array,
  config: GPTConfig,
  st: SafeTensors,
  prefix = '',
  source = 'safetensors',
): void {
  for (const t of namedTensors(config)) {
    const name = prefix + t.name;
    const entry = st.tensors.get(name);
    if (!entry) throw new WeftError('WEFT_E_FORMAT', `${source}: tensor ${name} is missing`);
    if (entry.shape.join(',') !== t.shape.join(',')) {
      throw new WeftError(
        'WEFT_E_FORMAT',
        `${source}: tensor ${name} has shape [${entry.shape.join(',')}] but the config needs [${t.shape.join(',')}]`,
      );
    }
    params.set(getFloat32(st, name, source), t.offset);
  }
}

/** Every GPT-2 tensor of the flat buffer `params` as F32 safetensors entries named `prefix + <hf name>`. */
export function weightTensors(
  params: Float32Array,
  config: GPTConfig,
  prefix = '',
): TensorToWrite[] {
  return namedTensors(config).map((t) => ({
    name: prefix + t.name,
    dtype: 'F32',
    shape: t.shape,
    data: params.subarray(t.offset, t.offset + t.size),
  }));
}
