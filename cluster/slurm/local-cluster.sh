#!/bin/bash
# A two-node Slurm cluster on one machine, for trying weft.sbatch without a real cluster and for
# tests/cluster/slurm.test.ts: munged, slurmctld and one slurmd per fake node (node1, node2, both at
# 127.0.0.1 on distinct ports), no systemd, all state under DIR. Needs root and Debian's slurmctld,
# slurmd, slurm-client and munge packages (`install` installs them).
#   cluster/slurm/local-cluster.sh install          # apt-get the packages if missing
#   cluster/slurm/local-cluster.sh start DIR        # prints `export SLURM_CONF=DIR/slurm.conf`
#   cluster/slurm/local-cluster.sh stop DIR
# Settings (environment): WEFT_SLURM_PORT (slurmctld's port, default 16817; the nodes use the next two).
set -euo pipefail
cmd=${1:-}
dir=${2:-}

need_dir() {
  [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
}

case "$cmd" in
install)
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      slurmctld slurmd slurm-client munge
  fi
  ;;
start)
  need_dir
  port=${WEFT_SLURM_PORT:-16817}
  cpus=$(nproc)
  mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2))
  host=$(hostname -s)
  mkdir -p "$dir/state"
  cat >"$dir/slurm.conf" <<EOF
ClusterName=weft-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName=node1 NodeAddr=127.0.0.1 NodeHostname=$host Port=$((port + 1)) CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=node2 NodeAddr=127.0.0.1 NodeHostname=$host Port=$((port + 2)) CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=weft Nodes=node[1-2] Default=YES MaxTime=INFINITE OverSubscribe=FORCE State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  if ! pgrep -x munged >/dev/null; then
    mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
    munged --force
  fi
  slurmctld -i
  slurmd -N node1
  slurmd -N node2
  for _ in $(seq 1 60); do
    if [ "$(sinfo -h -o '%t' 2>/dev/null | sort -u)" = idle ]; then
      echo "export SLURM_CONF=$dir/slurm.conf"
      exit 0
    fi
    sleep 0.5
  done
  echo "the local Slurm cluster did not come up: see $dir/*.log" >&2
  sinfo >&2 || true
  exit 1
  ;;
stop)
  need_dir
  pids=""
  for pid in "$dir"/slurmd-node1.pid "$dir"/slurmd-node2.pid "$dir"/slurmctld.pid; do
    [ -f "$pid" ] && pids="$pids $(cat "$pid")"
  done
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  # the daemons save their state as they exit: wait (up to 10 s) so the directory can go
  for _ in $(seq 100); do
    alive=""
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
  ;;
*)
  echo "usage: $0 install | start DIR | stop DIR" >&2
  exit 1
  ;;
esac
