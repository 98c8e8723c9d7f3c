// cluster/docker for real: the image builds from cluster/docker/Dockerfile as written, and the
// Compose project (compose.yaml plus a test override) runs one coordinator and `--scale worker=2`
// workers that train configs/tiny.json to the bytes of a one-worker `weft train` on the host.
// Needs a Docker daemon and Compose (v2 `docker compose` or v1 `docker-compose`);
// cluster/docker/ci-setup.sh installs and starts them on a Debian machine. Elsewhere skipped,
// saying why.
//
// No registry is reachable from this project's test machines, so where the Dockerfile's base
// image (node:20-slim) is not present the test makes a stand-in for it: the host's own node
// binary and npm, the shell and the few tools the Dockerfile's RUN steps call, the shared
// libraries all of them load (ldd), the official image's user `node` (uid 1000) and the host's CA
// bundle, imported with `docker import` and tagged node:20-slim. Where the real image is there
// (pulled), it is used as it is. The build passes `--network host` (npm ci reaches the registry
// through the host; the test daemon may run with --bridge=none) and the containers run with
// network_mode: host, the coordinator on a free loopback port, so every byte stays on 127.0.0.1.

import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT, runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/net.ts';
import { finalWeights } from '../helpers/runs.ts';
import { tempDir } from '../helpers/tmp.ts';

const BASE = 'node:20-slim'; // the Dockerfile's FROM
const IMAGE = 'weft:local'; // compose.yaml's image

function sh(
  cmd: string,
  args: string[],
  options: { timeout?: number; env?: NodeJS.ProcessEnv } = {},
) {
  return spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: options.timeout ?? 60_000,
    env: { ...process.env, ...options.env },
    maxBuffer: 64 * 1024 * 1024,
  });
}

const failed = (r: SpawnSyncReturns<string>) =>
  r.status !== 0 || r.error !== undefined || r.signal !== null;
const firstLine = (r: SpawnSyncReturns<string>) =>
  (r.error?.message ?? r.stderr ?? '').trim().split('\n')[0];

/** How to run Compose here (`docker compose`, else `docker-compose`), or null. */
function findCompose(): string[] | null {
  if (!failed(sh('docker', ['compose', 'version'], { timeout: 20_000 })))
    return ['docker', 'compose'];
  if (!failed(sh('docker-compose', ['version'], { timeout: 20_000 }))) return ['docker-compose'];
  return null;
}

const info = sh('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 20_000 });
const compose = failed(info) ? null : findCompose();
const why = failed(info)
  ? `no Docker daemon answers \`docker info\` (${firstLine(info)})`
  : compose === null
    ? 'Docker Compose is not installed (neither `docker compose` nor `docker-compose`)'
    : null;
if (why)
  console.log(
    `Docker tests skipped: ${why} (cluster/docker/ci-setup.sh installs and starts Docker)`,
  );

const dir = why ? '' : tempDir('weft-docker-'); // removed by afterAll
const project = `wefttest${process.pid}`; // Compose v1 drops dashes from project names
const composeArgs = [
  '-p',
  project,
  '-f',
  'cluster/docker/compose.yaml',
  '-f',
  join(dir, 'override.yaml'),
];

/** Runs Compose for this test's project; fails the test on a non-zero exit. */
function composeRun(args: string[], timeout = 120_000): string {
  const [cmd, ...pre] = compose ?? [];
  const r = sh(cmd, [...pre, ...composeArgs, ...args], { timeout, env: { WEFT_WORKERS: '2' } });
  expect(failed(r), `${cmd} ${pre.join(' ')} ${args.join(' ')}: ${r.stderr}`).toBe(false);
  return r.stdout;
}

afterAll(() => {
  if (!dir) return;
  if (existsSync(join(dir, 'override.yaml'))) {
    const [cmd, ...pre] = compose ?? [];
    sh(cmd, [...pre, ...composeArgs, 'down', '--volumes', '--remove-orphans']);
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

/** `path` (a file) copied to the same path under `root`, its symlinks followed. */
function copyInto(root: string, path: string, as = path): void {
  mkdirSync(join(root, dirname(as)), { recursive: true });
  copyFileSync(realpathSync(path), join(root, as));
  chmodSync(join(root, as), 0o755);
}

/** The stand-in for node:20-slim, made from this host's node and npm (see the top of this file). */
function importBaseImage(): void {
  const root = join(dir, 'rootfs');
  const node = realpathSync(process.execPath);
  const npm = [
    join(dirname(node), '..', 'lib', 'node_modules', 'npm'),
    '/usr/local/lib/node_modules/npm',
    '/usr/lib/node_modules/npm',
  ].find((p) => existsSync(join(p, 'bin', 'npm-cli.js')));
  expect(npm, `npm is not beside ${node}`).toBeDefined();
  copyInto(root, node, '/usr/local/bin/node');
  cpSync(npm as string, join(root, 'usr/local/lib/node_modules/npm'), {
    recursive: true,
    verbatimSymlinks: true,
  });
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(root, 'usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(root, 'usr/local/bin/npx'));
  // The shell and tools the Dockerfile's RUN steps and npm's scripts call (npm's shebang: env).
  const tools: [string, string][] = [
    ['sh', '/bin/sh'],
    ['mkdir', '/bin/mkdir'],
    ['chown', '/bin/chown'],
    ['env', '/usr/bin/env'],
  ];
  const binaries = [node];
  for (const [tool, as] of tools) {
    const path = sh('sh', ['-c', `command -v ${tool}`]).stdout.trim();
    expect(path, `${tool} not found`).not.toBe('');
    copyInto(root, path, as);
    binaries.push(realpathSync(path));
  }
  const ldd = sh('ldd', binaries);
  expect(failed(ldd), ldd.stderr).toBe(false);
  const libraries = new Set(ldd.stdout.match(/\/\S+\.so[^\s:]*/g));
  for (const library of libraries) copyInto(root, library);
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(
    join(root, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n',
  );
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\nnode:x:1000:\n');
  for (const d of ['root', 'tmp', 'home/node']) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  if (process.getuid?.() === 0) chownSync(join(root, 'home/node'), 1000, 1000);
  const changes = [
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    'CMD ["node"]',
  ];
  // Where the registry is reached through a proxy with its own CA, npm ci needs the host's bundle.
  const ca = process.env.NODE_EXTRA_CA_CERTS ?? '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(ca)) {
    copyInto(root, ca, '/etc/ssl/certs/ca-certificates.crt');
    changes.push('ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt');
  }
  const tar = sh('tar', ['-C', root, '--numeric-owner', '-cf', join(dir, 'rootfs.tar'), '.']);
  expect(failed(tar), tar.stderr).toBe(false);
  const imported = sh('docker', [
    'import',
    ...changes.flatMap((c) => ['--change', c]),
    join(dir, 'rootfs.tar'),
    BASE,
  ]);
  expect(failed(imported), imported.stderr).toBe(false);
  rmSync(root, { recursive: true, force: true });
  rmSync(join(dir, 'rootfs.tar'), { force: true });
}

/** Ids of this project's containers of `service`, stopped ones too. */
function containersOf(service: string): string[] {
  const r = sh('docker', [
    'ps',
    '-aq',
    '--filter',
    `label=com.docker.compose.project=${project}`,
    '--filter',
    `label=com.docker.compose.service=${service}`,
  ]);
  expect(failed(r), r.stderr).toBe(false);
  return r.stdout.trim().split('\n').filter(Boolean);
}

describe.skipIf(why !== null)('cluster/docker: the image and the Compose project', () => {
  it('builds, and two workers in containers train the tiny run to one worker’s bytes', async () => {
    const t0 = Date.now();
    if (failed(sh('docker', ['image', 'inspect', BASE]))) importBaseImage();
    const t1 = Date.now();
    const build = sh(
      'docker',
      ['build', '--network', 'host', '-f', 'cluster/docker/Dockerfile', '-t', IMAGE, '.'],
      { timeout: 300_000 },
    );
    expect(failed(build), `${build.stdout.slice(-4000)}\n${build.stderr}`).toBe(false);
    const t2 = Date.now();

    const text = join(dir, 'text.txt');
    writeFileSync(
      text,
      readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000),
      { mode: 0o644 },
    );
    const token = join(dir, 'token.txt');
    writeFileSync(token, 'a shared secret for the docker test\n', { mode: 0o644 });
    const port = await freePort();
    // compose.yaml's healthcheck, on this port and checked every second.
    const spec = parse(readFileSync(join(ROOT, 'cluster/docker/compose.yaml'), 'utf8')) as {
      services: { coordinator: { healthcheck: { test: string[] } } };
    };
    const health = spec.services.coordinator.healthcheck.test.map((a) =>
      a.replace(':29500/', `:${port}/`),
    );
    expect(health.join(' ')).toContain(`127.0.0.1:${port}/healthz`);
    // The override: host networking on loopback, a 20,000-character corpus, 6 steps on the
    // reference backend (deterministic per backend, and the host run below uses it too).
    const override = {
      services: {
        coordinator: {
          network_mode: 'host',
          command: [
            'coordinator',
            '--listen',
            `127.0.0.1:${port}`,
            '--config',
            'tiny',
            '--data',
            '/data/text.txt',
            '--out',
            '/runs/tiny',
            '--stream-data',
            '--steps',
            '6',
            '--backend',
            'reference',
          ],
          volumes: [`${text}:/data/text.txt:ro`],
          healthcheck: { test: health, interval: '1s' },
        },
        worker: {
          network_mode: 'host',
          environment: { WEFT_CONNECT: `ws://127.0.0.1:${port}` },
        },
      },
      secrets: { weft_token: { file: token } },
    };
    writeFileSync(join(dir, 'override.yaml'), JSON.stringify(override, null, 2)); // JSON is YAML

    // The coordinator first: it waits for its workers, and its healthcheck passes meanwhile.
    composeRun(['up', '-d', '--no-build', 'coordinator']);
    const coordinator = containersOf('coordinator');
    expect(coordinator).toHaveLength(1);
    const logs = () => composeRun(['logs', '--no-color']);
    const healthy = Date.now() + 60_000;
    let status = '';
    while (status !== 'healthy' && Date.now() < healthy) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      status = sh('docker', [
        'inspect',
        '-f',
        '{{.State.Health.Status}}',
        coordinator[0],
      ]).stdout.trim();
    }
    expect(status, logs()).toBe('healthy');
    composeRun(['up', '-d', '--no-build', '--scale', 'worker=2']);
    const workers = containersOf('worker');
    expect(workers).toHaveLength(2);
    const wait = sh('docker', ['wait', ...coordinator, ...workers], { timeout: 180_000 });
    expect(failed(wait), `${wait.stderr}\n${logs()}`).toBe(false);
    expect(wait.stdout.trim().split('\n'), logs()).toEqual(['0', '0', '0']);
    const output = logs();
    expect(output).toMatch(/6 steps on 2 workers \(reference backend: as --backend asked\)/);
    expect(output).toMatch(/done: 6 steps/);

    const copied = sh('docker', ['cp', `${coordinator[0]}:/runs/tiny`, join(dir, 'docker-run')]);
    expect(failed(copied), copied.stderr).toBe(false);
    const t3 = Date.now();
    const one = runCli([
      'train',
      '--config',
      'tiny',
      '--data',
      text,
      '--backend',
      'reference',
      '--steps',
      '6',
      '--out',
      join(dir, 'one'),
      '--workers',
      '1',
    ]);
    expect(one.status, one.stderr).toBe(0);
    expect(finalWeights(join(dir, 'docker-run')).equals(finalWeights(join(dir, 'one')))).toBe(true);
    const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
    console.log(
      `docker: base image ${s(t1 - t0)}, weft image build ${s(t2 - t1)}, compose run ${s(t3 - t2)}`,
    );
  }, 420_000);
});
