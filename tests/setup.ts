// Runs in every test file: removes the file's temporary directories once its tests are done (the
// worker process that ran it goes on to other files, so its exit is too late).

import { afterAll } from 'vitest';
import { removeTempDirs } from './helpers/tmp.ts';

afterAll(removeTempDirs);
