// `weft launch [train options]`: one command line for every task of a scheduled job (`srun weft
// launch ...`, an Indexed Job's pods). The role comes from the scheduler's environment
// (distributed/scheduler-env.ts): rank 0 runs the coordinator, listening on --port, for the
// world - 1 others, which run workers and connect to it (--connect or WEFT_CONNECT, else the
// scheduler's first node on --port), retrying while it starts.

import type { Command } from 'commander';
import { schedulerRole } from '../../distributed/scheduler-env.ts';
import { check } from '../../util/errors.ts';
import type { CoordinatorFlags } from './cluster.ts';
import { envOption, runCoordinator, runWorker, tokenFileOption } from './cluster.ts';
import { portFlag } from './options.ts';
import { addRunOptions } from './run-options.ts';

interface LaunchFlags extends Omit<CoordinatorFlags, 'listen' | 'workers'> {
  port: string;
  host: string;
  connect?: string;
  connectTimeout: string;
  threads?: string;
}

export function registerLaunch(program: Command): void {
  addRunOptions(
    program
      .command('launch')
      .description(
        'start this task of a scheduled job: the coordinator on rank 0, a worker elsewhere (Slurm, Kubernetes Indexed Jobs)',
      ),
  )
    .option('--port <n>', "the coordinator's port", '29500')
    .option('--host <addr>', 'address the coordinator listens on', '0.0.0.0')
    .addOption(
      envOption(
        '--connect <url>',
        "workers: the coordinator's address (default: the first node's)",
        'WEFT_CONNECT',
      ),
    )
    .option('--connect-timeout <s>', 'workers: seconds to keep retrying the coordinator', '300')
    .option('--rendezvous-timeout <s>', 'seconds the coordinator waits for workers', '300')
    .option('--heartbeat-timeout <s>', 'seconds of silence after which a worker is lost', '30')
    .addOption(tokenFileOption())
    .option(
      '--threads <n>',
      'kernel threads of each worker (wasm pool or OpenBLAS; on blas it changes the bits)',
      '1',
    )
    .action(async (flags: LaunchFlags) => {
      const role = schedulerRole();
      const port = portFlag('--port', flags.port, 1);
      if (role.rank === 0) {
        console.log(`launch (${role.source}): rank 0 of ${role.world}, the coordinator`);
        return runCoordinator({
          ...flags,
          listen: `${flags.host}:${port}`,
          workers: String(role.world - 1),
        });
      }
      const connect =
        flags.connect ?? (role.coordinatorHost && `ws://${role.coordinatorHost}:${port}`);
      check(
        Boolean(connect),
        'WEFT_E_CONFIG',
        `rank ${role.rank}: where is the coordinator? pass --connect ws://HOST:PORT or set WEFT_CONNECT`,
      );
      console.log(
        `launch (${role.source}): rank ${role.rank} of ${role.world}, a worker of ${connect}`,
      );
      return runWorker({
        connect: connect as string,
        connectTimeout: flags.connectTimeout,
        threads: flags.threads,
        name: process.env.WEFT_NAME ?? `rank-${role.rank}`,
        tokenFile: flags.tokenFile,
        overlap: true,
      });
    });
}
