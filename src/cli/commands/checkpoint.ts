// `weft checkpoint verify|inspect|export|import`: check a checkpoint, describe it, and move
// weights to and from Hugging Face GPT-2 directories.

import { join } from 'node:path';
import type { Command } from 'commander';
import { exportHf, importHf } from '../../checkpoint/hf.ts';
import { MANIFEST_FILE } from '../../checkpoint/format.ts';
import { loadCheckpoint, readManifest } from '../../checkpoint/read.ts';
import { paramCount } from '../../model/layout.ts';
import { tokenizerFromJSON } from '../../tokenizer/index.ts';
import { WeftError } from '../../util/errors.ts';

export function registerCheckpoint(program: Command): void {
  const cmd = program
    .command('checkpoint')
    .description('verify, inspect, export and import checkpoints');

  cmd
    .command('verify <path>')
    .description(
      'check every file of a checkpoint (sha256, sizes, tensor names and shapes); exit 1 naming a bad file',
    )
    .action((path: string) => {
      const state = loadCheckpoint(path);
      console.log(
        `ok: ${state.dir} (step ${state.step}, ${paramCount(state.config).toLocaleString('en-US')} parameters)`,
      );
    });

  cmd
    .command('inspect <path>')
    .description(
      'check a checkpoint as verify does, then describe it: step, config, tokenizer, files, last metrics',
    )
    .option('--json', 'print the manifest as JSON')
    .action((path: string, flags: { json?: boolean }) => {
      const { dir } = loadCheckpoint(path); // every file checked: a damaged one is refused
      const manifest = readManifest(dir);
      if (flags.json) {
        console.log(JSON.stringify({ dir, ...manifest }, null, 2));
        return;
      }
      const c = manifest.config;
      console.log(`checkpoint  ${dir}`);
      console.log(
        `step        ${manifest.step} (${manifest.tokensSeen.toLocaleString('en-US')} tokens seen, ${manifest.adamSteps} AdamW updates)`,
      );
      console.log(
        `model       nLayer=${c.nLayer} nHead=${c.nHead} nEmbd=${c.nEmbd} blockSize=${c.blockSize} vocabSize=${c.vocabSize}, ${paramCount(c).toLocaleString('en-US')} parameters`,
      );
      console.log(
        `tokenizer   ${tokenizerFromJSON(manifest.tokenizer, join(dir, MANIFEST_FILE)).name}`,
      );
      if (typeof manifest.kernel === 'string') console.log(`kernels     ${manifest.kernel}`);
      for (const [name, f] of Object.entries(manifest.files))
        console.log(
          `file        ${name}  ${f.bytes.toLocaleString('en-US')} bytes  sha256 ${f.sha256} (verified)`,
        );
      // a diverged run's loss is NaN, which JSON holds as null
      const m = manifest.metrics as {
        lastStep?: { loss: unknown };
        lastEval?: { bpb: unknown; loss: unknown };
      };
      const fixed = (x: unknown) => (typeof x === 'number' ? x.toFixed(4) : String(x));
      if (m.lastStep) console.log(`last step   loss ${fixed(m.lastStep.loss)}`);
      if (m.lastEval)
        console.log(
          `last eval   loss ${fixed(m.lastEval.loss)}, ${fixed(m.lastEval.bpb)} bits/byte`,
        );
    });

  cmd
    .command('export <path>')
    .description(
      'write a checkpoint as a Hugging Face GPT-2 directory (GPT2LMHeadModel.from_pretrained loads it)',
    )
    .requiredOption('--out <dir>', 'directory to write (new or empty)')
    .option('--format <format>', 'export format', 'hf')
    .action((path: string, flags: { out: string; format: string }) => {
      if (flags.format !== 'hf')
        throw new WeftError(
          'WEFT_E_CONFIG',
          `unknown export format "${flags.format}"; weft exports hf (Hugging Face)`,
        );
      console.log(`wrote ${exportHf(path, flags.out)}`);
    });

  cmd
    .command('import <dir>')
    .description(
      'import a Hugging Face GPT-2 directory (config.json + model.safetensors) as a new run',
    )
    .requiredOption('--out <rundir>', 'run directory to create (new or empty)')
    .option('--overwrite', 'replace the run (or write among the files) already in --out')
    .action(async (dir: string, flags: { out: string; overwrite?: boolean }) => {
      console.log(`wrote ${await importHf(dir, flags.out, flags.overwrite)}`);
    });
}
