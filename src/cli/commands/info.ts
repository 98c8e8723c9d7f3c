// `weft info`: the size of a configured model: parameters, memory, FLOPs per step.

import type { Command } from 'commander';
import { paramCount, trainingFlops } from '../../model/layout.ts';
import { loadRunConfig, parseOverrides, sequenceLength } from '../../train/config.ts';
import { specVocabSize } from '../../tokenizer/index.ts';
import { resolveConfigPath } from '../paths.ts';
import { collect } from './options.ts';

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('print the size of a configured model: parameters, memory, FLOPs per step')
    .requiredOption('--config <file>', 'run config JSON, or a preset name from configs/')
    .option('--set <key=value>', 'override a config key (repeatable)', collect, [])
    .action((opts: { config: string; set: string[] }) => {
      const loaded = loadRunConfig(resolveConfigPath(opts.config), parseOverrides(opts.set));
      // vocabSize 0 takes the tokenizer's size, as training does once the data is prepared
      const fromTokenizer = loaded.vocabSize === 0;
      const cfg = fromTokenizer
        ? { ...loaded, vocabSize: specVocabSize(loaded.tokenizer) }
        : loaded;
      const T = sequenceLength(cfg);
      const n = paramCount(cfg);
      const flops = trainingFlops(cfg, cfg.batchSize, T);
      console.log(
        `config      ${cfg.name}: nLayer=${cfg.nLayer} nHead=${cfg.nHead} nEmbd=${cfg.nEmbd} blockSize=${cfg.blockSize} vocabSize=${cfg.vocabSize}` +
          (fromTokenizer
            ? ` (tokenizer ${cfg.tokenizer}'s${cfg.tokenizer.startsWith('bpe:') ? ', at most: a small corpus learns fewer' : ''})`
            : ''),
      );
      console.log(`parameters  ${n.toLocaleString('en-US')}`);
      console.log(
        `memory      ${((n * 4 * 4) / 2 ** 20).toFixed(1)} MiB for params, grads, AdamW m and v (fp32)`,
      );
      console.log(`batch       B=${cfg.batchSize} x T=${T} = ${cfg.batchSize * T} tokens per step`);
      console.log(`compute     ${(flops / 1e9).toFixed(2)} GFLOP per training step`);
    });
}
