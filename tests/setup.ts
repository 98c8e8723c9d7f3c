// Runs in every test file: once its tests are done, kills the processes it started that still
// run (a failed test leaves them) and removes its temporary directories (the worker process that
// ran the file goes on to other files, so its exit is too late).

import { afterAll } from 'vitest';
import { killChildren } from './helpers/cli.ts';
import { removeTempDirs } from './helpers/tmp.ts';

afterAll(() => {
  killChildren();
  removeTempDirs();
});
