// Vitest configuration: tests live in tests/ and mirror src/, in two projects that each run one
// file at a time. `cluster` (tests/cluster/: Slurm, Docker, network namespaces, a scheduler's late
// start) mostly waits on daemons and timeouts; `npm test` (scripts/test.mjs) runs it beside
// `compute`, the rest, so the waits overlap the computing. `vitest run` runs them one by one.
import { defineConfig } from 'vitest/config';

const cluster = 'tests/cluster/**/*.test.ts';

export default defineConfig({
  test: {
    setupFiles: ['tests/setup.ts'],
    testTimeout: 60_000,
    fileParallelism: false,
    projects: [
      {
        extends: true,
        test: { name: 'compute', include: ['tests/**/*.test.ts'], exclude: [cluster] },
      },
      { extends: true, test: { name: 'cluster', include: [cluster] } },
    ],
  },
});
