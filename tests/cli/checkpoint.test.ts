// `weft checkpoint` as a user runs it, on one small trained run: export and import never write
// into a run or checkpoint directory nor over other files (import replaces a run only with
// --overwrite), inspect verifies what it describes, and a damaged manifest or `latest` is one line
// naming the file, before anything (a resume) uses it.

import {
  cpSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, expectCliError, runCli } from '../helpers/cli.ts';
import { editManifest } from '../helpers/manifest.ts';
import { tempDir } from '../helpers/tmp.ts';

const dir = tempDir();
const text = join(dir, 'text.txt');
writeFileSync(text, readFileSync(join(ROOT, 'data/tinyshakespeare.txt'), 'utf8').slice(0, 20_000));
const run = join(dir, 'run');
/** `weft train` of configs/tiny.json on `text` into `out`, one worker, no evaluation; plus `extra`. */
const train = (out: string, extra: string) =>
  runCli([
    ...`train --config tiny --set evalEvery=0 --workers 1 ${extra}`.split(' '),
    '--data',
    text,
    '--out',
    out,
  ]);
const trained = train(run, '--set ckptEvery=10 --steps 20');
const ckpt = join(run, 'checkpoints', 'step-00000020');
const hf = join(dir, 'hf');

/** Every file under `root` (relative name) with its bytes, base64: "nothing changed" checks. */
const snapshot = (root: string): Record<string, string> =>
  Object.fromEntries(
    readdirSync(root, { recursive: true, encoding: 'utf8' })
      .filter((f) => statSync(join(root, f)).isFile())
      .map((f) => [f, readFileSync(join(root, f)).toString('base64')]),
  );

/** A copy of the trained run, with `change` applied to its latest checkpoint directory. */
function damagedCopy(change: (ckptDir: string) => void): string {
  const copy = join(tempDir(), 'run');
  cpSync(run, copy, { recursive: true });
  change(join(copy, 'checkpoints', 'step-00000020'));
  return copy;
}

describe('weft checkpoint export', () => {
  it('writes a new or empty directory whole, and nothing else is left there', () => {
    expect(trained.status, trained.stderr).toBe(0);
    const fresh = runCli(['checkpoint', 'export', run, '--out', hf]);
    expect(fresh.status, fresh.stderr).toBe(0);
    expect(readdirSync(hf).sort()).toEqual([
      'config.json',
      'model.safetensors',
      'weft-tokenizer.json',
    ]);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(runCli(['checkpoint', 'export', run, '--out', empty]).status).toBe(0);
    expect(snapshot(empty)).toEqual(snapshot(hf));
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // another project's manifest.json above --out is not a checkpoint's
    const project = join(dir, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'manifest.json'), '{"name": "an app"}');
    const inside = runCli(['checkpoint', 'export', run, '--out', join(project, 'hf')]);
    expect(inside.status, inside.stderr).toBe(0);
  });

  it('refuses a checkpoint directory, a run, a non-empty directory, or below checkpoints/, changing nothing', () => {
    const before = snapshot(run);
    const refusals: [string, RegExp][] = [
      [
        ckpt,
        /--out .*step-00000020 is a checkpoint directory; export never writes into one: choose an empty or new directory/,
      ],
      [
        run,
        /--out .*run is a weft run directory; export writes a new directory: choose an empty or new directory/,
      ],
      [hf, /--out .*hf is not empty; export writes a new directory/],
      [
        join(run, 'checkpoints', 'hf'),
        /--out .*is inside .*checkpoints, a run's checkpoints directory, which weft manages/,
      ],
    ];
    for (const [out, message] of refusals)
      expectCliError(runCli(['checkpoint', 'export', run, '--out', out]), message);
    expect(snapshot(run)).toEqual(before);
    // a resume still verifies the checkpoint export was pointed at
    expect(runCli(['checkpoint', 'verify', run]).status).toBe(0);
  });

  it('refuses an --out that is a file in one line', () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'keep me');
    expectCliError(
      runCli(['checkpoint', 'export', run, '--out', file]),
      /--out .*a-file is a file; export writes a directory: choose an empty or new directory/,
    );
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });
});

describe('weft checkpoint import', () => {
  it('refuses a run holding checkpoints unless --overwrite, which replaces its checkpoints', () => {
    const copy = damagedCopy(() => {});
    const before = snapshot(copy);
    expectCliError(
      runCli(['checkpoint', 'import', hf, '--out', copy]),
      /--out .*run already holds a run; pass --overwrite to replace it, or choose an empty or new directory/,
    );
    expect(snapshot(copy)).toEqual(before);
    const replaced = runCli(['checkpoint', 'import', hf, '--out', copy, '--overwrite']);
    expect(replaced.status, replaced.stderr).toBe(0);
    expect(readdirSync(join(copy, 'checkpoints')).sort()).toEqual(['latest', 'step-00000000']);
    expect(readFileSync(join(copy, 'checkpoints', 'latest'), 'utf8')).toBe('step-00000000\n');
    expect(readdirSync(copy)).not.toContain('weft.lock');
    // the earlier checkpoints were set aside while the new one was written, then removed
    expect(readdirSync(copy).filter((f) => f.startsWith('checkpoints.'))).toEqual([]);
    const verify = runCli(['checkpoint', 'verify', copy]);
    expect(verify.stdout).toMatch(/^ok: .*step-00000000 \(step 0,/);
  });

  it('refuses a checkpoint directory (even with --overwrite), a file, and a non-empty directory', () => {
    const before = snapshot(run);
    const into = join(run, 'checkpoints', 'step-00000010');
    for (const extra of [[], ['--overwrite']])
      expectCliError(
        runCli(['checkpoint', 'import', hf, '--out', into, ...extra]),
        /--out .*step-00000010 is a checkpoint directory; import never writes into one/,
      );
    expect(snapshot(run)).toEqual(before);
    expectCliError(
      runCli(['checkpoint', 'import', hf, '--out', join(ROOT, 'data', 'README.md')]),
      /--out .*README\.md is a file; import writes a directory/,
    );
    expectCliError(
      runCli(['checkpoint', 'import', hf, '--out', hf]),
      /--out .*hf is not empty; choose an empty or new directory, or pass --overwrite/,
    );
    const fresh = join(tempDir(), 'imported');
    expect(runCli(['checkpoint', 'import', hf, '--out', fresh]).status).toBe(0);
    expect(readdirSync(fresh)).toEqual(['checkpoints']);
  });
});

describe('weft checkpoint inspect', () => {
  it('verifies the files it describes: a flipped bit is one line, exit 1', () => {
    const good = runCli(['checkpoint', 'inspect', run]);
    expect(good.status, good.stderr).toBe(0);
    expect(good.stdout).toMatch(
      /^file {8}model\.safetensors .* sha256 [0-9a-f]{64} \(verified\)$/m,
    );
    const copy = damagedCopy((c) => {
      const bytes = readFileSync(join(c, 'model.safetensors'));
      bytes[bytes.length - 3] ^= 0x10;
      writeFileSync(join(c, 'model.safetensors'), bytes);
    });
    for (const extra of [[], ['--json']])
      expectCliError(
        runCli(['checkpoint', 'inspect', copy, ...extra]),
        /step-00000020\/model\.safetensors does not match its sha256 in the manifest \(the file is damaged\)/,
      );
  });
});

describe('a damaged manifest or latest is refused before use, in one line naming it', () => {
  const cases: [string, (c: string) => void, RegExp][] = [
    [
      'a manifest without data',
      (c) => editManifest(c, (m) => delete m.data),
      /step-00000020\/manifest\.json lacks "data" \(an object with the strings path and manifestSha256\)/,
    ],
    [
      'a manifest without adamSteps',
      (c) => editManifest(c, (m) => delete m.adamSteps),
      /manifest\.json lacks "adamSteps" \(an integer >= 0\)/,
    ],
    [
      'a manifest without loader',
      (c) => editManifest(c, (m) => delete m.loader),
      /manifest\.json lacks "loader"/,
    ],
    [
      'a manifest whose data path is not a string',
      (c) => editManifest(c, (m) => ((m.data as Record<string, unknown>).path = 3)),
      /manifest\.json has an invalid "data"/,
    ],
    [
      'a manifest whose step is not its directory',
      (c) => editManifest(c, (m) => (m.step = 7)),
      /step-00000020\/manifest\.json says step 7 but its directory is named for step 20/,
    ],
    [
      'a latest that is a directory',
      (c) => {
        const latest = join(c, '..', 'latest');
        rmSync(latest);
        mkdirSync(latest);
      },
      /checkpoints\/latest is a directory, not the file naming the newest checkpoint/,
    ],
  ];
  it.each(cases)('%s: verify and train --resume refuse it', (_, damage, message) => {
    const copy = damagedCopy(damage);
    const before = snapshot(copy);
    expectCliError(runCli(['checkpoint', 'verify', copy]), message);
    expectCliError(runCli(['train', '--out', copy, '--resume', '--workers', '1']), message);
    expect(snapshot(copy)).toEqual(before);
  });

  it('train --overwrite still replaces a run whose latest is a directory', () => {
    const copy = damagedCopy((c) => {
      rmSync(join(c, '..', 'latest'));
      mkdirSync(join(c, '..', 'latest'));
    });
    const r = train(copy, '--steps 1 --overwrite');
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(copy, 'checkpoints', 'latest'), 'utf8')).toBe('step-00000001\n');
  });
});
