// The model a server answers with: loaded from a checkpoint (verified), named after its run (and
// answering to the run config's `name` too), and with `follow`, replaced by each newer checkpoint
// that training publishes in the run directory. Requests hold a lease on the model they start
// with; a replaced model's buffers go back to the backend when its last lease ends. A checkpoint
// that fails to load is reported and skipped, and the server keeps answering with the one it has.

import { basename, dirname } from 'node:path';
import type { LoadedModel } from '../checkpoint/read.ts';
import { loadModel, resolveCheckpoint } from '../checkpoint/read.ts';
import { checkChatRows } from '../tokenizer/chat.ts';
import type { Backend } from '../kernels/backend.ts';

export interface ServedModel extends LoadedModel {
  /** The id clients pass as `model` (and the one responses and the models list report). */
  id: string;
  /** Other names a request may use: the run directory's and the run config's, when not the id. */
  aliases: string[];
  /** When it was loaded (the models list reports it as created_at). */
  loadedAt: Date;
}

/** The run's name: the directory above checkpoints/ (or the checkpoint's own name). */
function modelId(checkpointDir: string): string {
  const parent = dirname(checkpointDir);
  return basename(parent) === 'checkpoints' ? basename(dirname(parent)) : basename(checkpointDir);
}

/** The names besides `id` that a checkpoint answers to. */
function aliasesOf(loaded: LoadedModel, id: string): string[] {
  const names = [modelId(loaded.dir), loaded.config.name];
  const usable = names.filter((n): n is string => typeof n === 'string' && n !== '' && n !== id);
  return [...new Set(usable)];
}

/** True when a request naming `name` is meant for `served`. */
export function answersTo(served: ServedModel, name: string): boolean {
  return name === served.id || served.aliases.includes(name);
}

/** The model's id, and its aliases if it has any: `run (also answers to "name")`. */
export function names(served: ServedModel): string {
  const aliases = served.aliases.map((a) => JSON.stringify(a)).join(', ');
  return aliases ? `${served.id} (also answers to ${aliases})` : served.id;
}

export class ModelHost {
  private served: ServedModel;
  private timer: NodeJS.Timeout | null = null;
  /** Leases held on each model (the current one and replaced ones still in use). */
  private readonly leases = new Map<ServedModel, number>();

  constructor(
    private readonly path: string,
    private readonly backend: Backend | undefined,
    private readonly log: (line: string) => void = () => {},
    id?: string,
  ) {
    this.served = this.load(id);
  }

  get current(): ServedModel {
    return this.served;
  }

  /** The current model, held until `release` (a request's lifetime). */
  lease(): { served: ServedModel; release: () => void } {
    const served = this.served;
    this.leases.set(served, (this.leases.get(served) ?? 0) + 1);
    let released = false;
    return {
      served,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.leases.get(served) ?? 1) - 1;
        this.leases.set(served, left);
        if (left === 0 && served !== this.served) this.retire(served);
      },
    };
  }

  /** Checks every `intervalMs` for a newer checkpoint of the run and switches to it. */
  follow(intervalMs = 2000): void {
    this.timer = setInterval(() => this.refresh(), intervalMs);
    this.timer.unref();
  }

  /** Switches to the run's latest checkpoint if it changed; true when it did. */
  refresh(): boolean {
    let dir: string;
    try {
      dir = resolveCheckpoint(this.path);
    } catch (error) {
      this.log(`follow: ${(error as Error).message}`);
      return false;
    }
    if (dir === this.served.dir) return false;
    try {
      const old = this.served;
      this.served = this.load(this.served.id);
      if (!this.leases.get(old)) this.retire(old);
      this.log(`now serving ${this.served.dir} (step ${this.served.step})`);
      return true;
    } catch (error) {
      this.log(`follow: kept step ${this.served.step}: ${(error as Error).message}`);
      return false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private retire(served: ServedModel): void {
    this.leases.delete(served);
    served.model.dispose();
    this.log(`released the model of step ${served.step}`);
  }

  private load(id?: string): ServedModel {
    const loaded = loadModel(this.path, this.backend);
    try {
      checkChatRows(loaded.tokenizer, loaded.config.vocabSize, this.path); // requests are chats
    } catch (err) {
      loaded.model.dispose();
      throw err;
    }
    const name = id ?? modelId(loaded.dir);
    return { ...loaded, id: name, aliases: aliasesOf(loaded, name), loadedAt: new Date() };
  }
}
