// The commander program: every weft subcommand, its flags and its help text.

import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { paramCount, trainingFlops } from '../model/layout.ts';
import { loadRunConfig, parseOverrides, sequenceLength } from '../train/config.ts';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const collect = (value: string, previous: string[]) => [...previous, value];

export function buildProgram(): Command {
  const program = new Command('weft')
    .description('Train GPT-2 style language models in TypeScript, on one machine or many.')
    .version(pkg.version)
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(`weft: ${text.replace(/^error: /, '')}`),
    });

  program
    .command('info')
    .description('print the size of a configured model: parameters, memory, FLOPs per step')
    .requiredOption('--config <file>', 'run config JSON (see configs/)')
    .option('--set <key=value>', 'override a config key (repeatable)', collect, [])
    .action((opts: { config: string; set: string[] }) => {
      const cfg = loadRunConfig(opts.config, parseOverrides(opts.set));
      const T = sequenceLength(cfg);
      const n = paramCount(cfg);
      const flops = trainingFlops(cfg, cfg.batchSize, T);
      console.log(
        `config      ${cfg.name}: nLayer=${cfg.nLayer} nHead=${cfg.nHead} nEmbd=${cfg.nEmbd} blockSize=${cfg.blockSize} vocabSize=${cfg.vocabSize}`,
      );
      console.log(`parameters  ${n.toLocaleString('en-US')}`);
      console.log(
        `memory      ${((n * 4 * 4) / 2 ** 20).toFixed(1)} MiB for params, grads, AdamW m and v (fp32)`,
      );
      console.log(`batch       B=${cfg.batchSize} x T=${T} = ${cfg.batchSize * T} tokens per step`);
      console.log(`compute     ${(flops / 1e9).toFixed(2)} GFLOP per training step`);
    });

  return program;
}
