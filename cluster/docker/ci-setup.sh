#!/bin/bash
# Docker for tests/cluster/docker.test.ts on a Debian machine without systemd (CI, as root):
# installs Debian's docker.io and, where no `docker compose` plugin is present, docker-compose
# (Compose v1), then starts dockerd in the background unless a daemon already answers, and waits
# up to 30 s for `docker info`. The daemon leaves the host's network alone: no iptables rules, no
# docker0 bridge, no change to ip_forward (the test's containers use the host's network, on
# loopback). Idempotent. Never fails: where Docker cannot be set up it prints a warning and exits 0,
# and the test is skipped with the reason printed.
#   cluster/docker/ci-setup.sh
# Settings (environment): WEFT_DOCKERD_LOG (the daemon's log, default /tmp/weft-dockerd.log).
set -u
log=${WEFT_DOCKERD_LOG:-/tmp/weft-dockerd.log}

warn() {
  echo "warning: $*; the Docker test will be skipped" >&2
  exit 0
}

up() { docker info >/dev/null 2>&1; }

has_compose() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }

missing=()
up || command -v dockerd >/dev/null || missing+=(docker.io)
has_compose || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || warn "not root: cannot install ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null) || warn "could not install ${missing[*]}"
fi
has_compose || warn "Docker Compose is not installed"

if up; then
  echo "docker: a daemon is already running"
else
  [ "$(id -u)" = 0 ] || warn "not root: cannot start dockerd"
  # overlay2 first; vfs (slow, but works on any filesystem) if the daemon dies at once.
  for driver in overlay2 vfs; do
    setsid dockerd --iptables=false --bridge=none --ip-forward=false --storage-driver "$driver" \
      >"$log" 2>&1 </dev/null &
    pid=$!
    for _ in $(seq 1 30); do
      up && break 2
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      warn "dockerd did not answer within 30 s (its log: $log)"
    fi
    echo "docker: dockerd with $driver exited: $(tail -n 1 "$log")" >&2
  done
  up || warn "dockerd could not start (its log: $log)"
  echo "docker: started dockerd (pid $pid, storage $driver, log $log)"
fi
docker version --format 'docker: client {{.Client.Version}}, server {{.Server.Version}}' || true
exit 0
