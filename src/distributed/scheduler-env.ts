// A process's role in a job, from what the scheduler that started it sets (as torchrun reads
// them): Slurm's SLURM_PROCID (this task), SLURM_NTASKS (tasks in all) and SLURM_JOB_NODELIST
// (the coordinator runs on its first node); Kubernetes' JOB_COMPLETION_INDEX (an Indexed Job's
// pod) with WEFT_WORLD_SIZE; or WEFT_RANK and WEFT_WORLD_SIZE anywhere. Rank 0 coordinates, the
// others are workers. WEFT_CONNECT (or --connect), when set, says where the coordinator is.

import { WeftError, check } from '../util/errors.ts';

export interface SchedulerRole {
  /** 0: the coordinator; 1 .. world - 1: workers. */
  rank: number;
  /** Processes in the job: the coordinator and world - 1 workers. */
  world: number;
  /** Where the coordinator runs (host name or address), when the scheduler says. */
  coordinatorHost: string | null;
  /** Which variables it came from. */
  source: 'slurm' | 'kubernetes' | 'weft';
}

/** The first host of a Slurm hostlist: "node[03-05,9],gpu1" -> "node03". */
export function firstHost(nodelist: string): string {
  const m = /^([^,[]+)(?:\[([^\]]+)\])?/.exec(nodelist.trim());
  check(m !== null, 'WEFT_E_CONFIG', `SLURM_JOB_NODELIST "${nodelist}" is not a Slurm hostlist`);
  const [, prefix, ranges] = m;
  if (!ranges) return prefix;
  return prefix + ranges.split(',')[0].split('-')[0];
}

function integer(env: NodeJS.ProcessEnv, name: string): number | null {
  const text = env[name];
  if (text === undefined || text === '') return null;
  const value = Number(text);
  check(
    Number.isSafeInteger(value) && value >= 0,
    'WEFT_E_CONFIG',
    `${name}=${text} is not a non-negative integer`,
  );
  return value;
}

/** This process's role, from the environment; one line naming what is missing otherwise. */
export function schedulerRole(env: NodeJS.ProcessEnv = process.env): SchedulerRole {
  let role: SchedulerRole;
  const slurmRank = integer(env, 'SLURM_PROCID');
  const k8sIndex = integer(env, 'JOB_COMPLETION_INDEX');
  const weftRank = integer(env, 'WEFT_RANK');
  const weftWorld = integer(env, 'WEFT_WORLD_SIZE');
  if (slurmRank !== null) {
    const world = integer(env, 'SLURM_NTASKS') ?? weftWorld;
    check(world !== null, 'WEFT_E_CONFIG', 'SLURM_PROCID is set but SLURM_NTASKS is not');
    const nodes = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
    role = {
      rank: slurmRank,
      world,
      coordinatorHost: nodes ? firstHost(nodes) : null,
      source: 'slurm',
    };
  } else if (k8sIndex !== null || weftRank !== null) {
    check(
      weftWorld !== null,
      'WEFT_E_CONFIG',
      `${k8sIndex !== null ? 'JOB_COMPLETION_INDEX' : 'WEFT_RANK'} is set but WEFT_WORLD_SIZE is not`,
    );
    role = {
      rank: (k8sIndex ?? weftRank) as number,
      world: weftWorld,
      coordinatorHost: null,
      source: k8sIndex !== null ? 'kubernetes' : 'weft',
    };
  } else {
    throw new WeftError(
      'WEFT_E_CONFIG',
      'weft launch found no scheduler: set SLURM_PROCID and SLURM_NTASKS (srun does), JOB_COMPLETION_INDEX (an Indexed Job) or WEFT_RANK, with WEFT_WORLD_SIZE',
    );
  }
  check(
    role.world >= 2 && role.rank < role.world,
    'WEFT_E_CONFIG',
    `rank ${role.rank} of ${role.world} processes: weft launch needs at least 2 (a coordinator and a worker) and a rank below that`,
  );
  return role;
}
