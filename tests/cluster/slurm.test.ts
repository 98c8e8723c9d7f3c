// cluster/slurm/weft.sbatch under a real Slurm: a two-node cluster on this machine
// (cluster/slurm/local-cluster.sh: munged, slurmctld, one slurmd per node), the job script
// submitted as written for configs/tiny.json with 1 coordinator + 2 workers, giving the bytes of a
// one-worker `weft train`; then a longer job cancelled with `scancel` mid-run and submitted again,
// which resumes from the checkpoint the cancelled job saved and finishes with the same bytes.
// Skipped, saying why, where Slurm is not installed or the daemons cannot run (not root).

import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli } from '../helpers/cli.ts';
import { finalWeights, writeTinyConfig } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const run = promisify(execFile);
const script = join(ROOT, 'cluster/slurm/local-cluster.sh');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['sbatch', 'slurmctld', 'slurmd', 'munged'].filter((c) => !has(c));
const why =
  process.getuid?.() !== 0
    ? 'not root (the Slurm daemons run as root here)'
    : missing.length > 0
      ? `${missing.join(', ')} not installed (cluster/slurm/local-cluster.sh install)`
      : null;
if (why) console.log(`Slurm tests skipped: ${why}`);

const dir = tempDir('weft-slurm-');
const slurmDir = join(dir, 'slurm');
let env: NodeJS.ProcessEnv = {};

/** A TCP port free on 127.0.0.1 now, with the next two (the local cluster's node ports) too. */
async function freePorts(): Promise<number> {
  for (;;) {
    const ports: number[] = [];
    const servers = [];
    try {
      const first = createServer();
      await new Promise<void>((ok) => first.listen(0, '127.0.0.1', ok));
      servers.push(first);
      const base = (first.address() as { port: number }).port;
      if (base > 65_000) continue;
      for (const port of [base + 1, base + 2]) {
        const s = createServer();
        await new Promise<void>((ok, fail) => s.once('error', fail).listen(port, '127.0.0.1', ok));
        servers.push(s);
      }
      ports.push(base);
    } catch {
      // one of the next two is taken: try another
    } finally {
      await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
    }
    if (ports.length > 0) return ports[0];
  }
}

/** Submits weft.sbatch (3 tasks on 2 nodes) for `config`, its run in `out`; returns the job id. */
function submit(config: string, out: string): string {
  const r = spawnSync(
    'sbatch',
    [
      '--parsable',
      '--export=ALL',
      '--nodes=2',
      '--ntasks=3',
      `--output=${out}.out`,
      'cluster/slurm/weft.sbatch',
    ],
    { cwd: ROOT, encoding: 'utf8', env: { ...env, WEFT_CONFIG: config, WEFT_OUT: out } },
  );
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.trim().split(';')[0];
}

/** The job's state once it has left the queue (COMPLETED, CANCELLED, FAILED, ...). */
async function finished(job: string, timeoutMs = 120_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const { stdout } = await run('scontrol', ['show', 'job', job, '-o'], { env });
    const state = /JobState=(\S+)/.exec(stdout)?.[1] ?? '';
    if (!['PENDING', 'RUNNING', 'COMPLETING', 'CONFIGURING'].includes(state)) return state;
    await new Promise((ok) => setTimeout(ok, 250));
  }
  throw new Error(`job ${job} still running after ${timeoutMs / 1000} s`);
}

/** Polls `file` until its text matches `pattern`. */
async function waitForText(file: string, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(existsSync(file) && pattern.test(readFileSync(file, 'utf8')))) {
    if (Date.now() > until) throw new Error(`${file} never matched ${pattern}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** sha256 of the final weights of a one-worker `weft train` of `config` on the bundled corpus. */
function oneWorker(config: string, out: string): string {
  const r = runCli([
    'train',
    '--config',
    config,
    '--data',
    'data/tinyshakespeare.txt',
    '--out',
    out,
    '--workers',
    '1',
  ]);
  expect(r.status, r.stderr).toBe(0);
  return sha256(finalWeights(out));
}

describe.skipIf(why !== null)('weft.sbatch on a two-node Slurm cluster', () => {
  beforeAll(async () => {
    const port = await freePorts();
    const { stdout } = await run(script, ['start', slurmDir], {
      env: { ...process.env, WEFT_SLURM_PORT: String(port) },
    });
    const token = join(dir, 'token');
    writeFileSync(token, 'a shared secret for the slurm test\n', { mode: 0o600 });
    env = {
      ...process.env,
      SLURM_CONF: /SLURM_CONF=(\S+)/.exec(stdout)?.[1],
      PATH: `${dirname(process.execPath)}:${process.env.PATH}`,
      WEFT_TOKEN_FILE: token,
      WEFT_PORT: String(await freePorts()),
    };
  }, 60_000);
  afterAll(() => {
    // jobs first (their steps outlive slurmd), then the daemons
    const jobs = spawnSync('squeue', ['-h', '-o', '%i'], { env, encoding: 'utf8' }).stdout ?? '';
    if (jobs.trim()) spawnSync('scancel', jobs.trim().split(/\s+/), { env });
    spawnSync(script, ['stop', slurmDir]);
  });

  it('configs/tiny.json, 1 coordinator + 2 workers: the bytes of one worker', async () => {
    const expected = oneWorker('configs/tiny.json', join(dir, 'one'));
    const out = join(dir, 'tiny');
    const job = submit('configs/tiny.json', out);
    expect(await finished(job)).toBe('COMPLETED');
    const log = readFileSync(`${out}.out`, 'utf8');
    expect(log).toMatch(/launch \(slurm\): rank 0 of 3, the coordinator/);
    expect(log).toMatch(/worker rank-2 joined/);
    expect(log).toMatch(/20 steps on 2 workers/);
    expect(sha256(finalWeights(out))).toBe(expected);
  }, 120_000);

  it('scancel mid-run, then the same job again: it resumes to the same bytes', async () => {
    const long = { steps: 600, evalEvery: 300, logEvery: 50 };
    const config = writeTinyConfig(join(dir, 'long.json'), long);
    const expected = oneWorker(config, join(dir, 'long-one'));
    const out = join(dir, 'long');
    const first = submit(config, out);
    await waitForText(`${out}.out`, /step 100\/600/);
    await run('scancel', [first], { env });
    expect(await finished(first)).toBe('CANCELLED');
    const saved = readdirSync(join(out, 'checkpoints')).filter((n) => n.startsWith('step-'));
    expect(saved, 'the cancelled job saved a checkpoint before step 600').toHaveLength(1);
    expect(saved[0] < 'step-00000600', saved[0]).toBe(true);
    expect(readFileSync(`${out}.out`, 'utf8')).toMatch(/stopped at step \d+; checkpoint saved/);

    const second = submit(config, out);
    expect(await finished(second)).toBe('COMPLETED');
    const step = Number(saved[0].slice('step-'.length));
    expect(readFileSync(`${out}.out`, 'utf8')).toContain(`checkpoints/${saved[0]} (step ${step})`);
    expect(sha256(finalWeights(out))).toBe(expected);
  }, 180_000);
});
