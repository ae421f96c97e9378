#!/usr/bin/env bash
# Make a Docker engine and the local base image available for the ContainerExecutor
# tests. No registry is reachable on CI machines, so the base image is built with
# debootstrap from the Debian mirror and `docker import`ed. Safe to run repeatedly:
# every step is skipped when its result is already there.
set -euo pipefail

IMAGE="${PY_CODE_MODE_BASE_IMAGE:-local/python:3.11-bookworm}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/py-code-mode-dockerd.log}"
say() { printf 'docker.sh: %s\n' "$*"; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The engine: a `docker` client alone (some machines ship one) is not enough.
if ! command -v dockerd >/dev/null 2>&1; then
  say "installing docker.io"
  apt_install docker.io
fi

if ! docker version >/dev/null 2>&1; then
  # A dockerd killed with its session leaves pid files behind that make the next
  # dockerd refuse to start; drop them when their process is gone.
  alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! alive "$(cat "$pidfile" 2>/dev/null)"; then
      say "removing stale $pidfile"
      rm -f "$pidfile"
    fi
  done
  say "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
  if ! docker version >/dev/null 2>&1; then
    say "dockerd did not become ready within 30 s; last log lines:"
    tail -n 20 "$DOCKERD_LOG" >&2 || true
    exit 1
  fi
fi
say "engine ready: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "image $IMAGE present"
else
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    apt_install debootstrap
  fi
  root="$(mktemp -d)"
  trap 'rm -rf "$root" "$root.debootstrap.log"' EXIT
  say "building $IMAGE with debootstrap (about a minute)"
  log="$root.debootstrap.log"
  for attempt in 1 2; do
    if debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$root" >"$log" 2>&1; then
      break
    fi
    if [ "$attempt" = 2 ]; then
      say "debootstrap failed twice; last log lines:"
      tail -n 20 "$log" >&2
      exit 1
    fi
    say "debootstrap failed (a mirror hiccup?); retrying once"
    rm -rf "$root" && mkdir -p "$root"
  done
  rm -f "$log"
  # Trim what a sandbox never needs; keeps the import and container starts quick.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/locale
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' - "$IMAGE" >/dev/null
  say "image $IMAGE built"
fi

docker run --rm --network none "$IMAGE" python3 -c "import sys; print('docker.sh: image python', sys.version.split()[0])"

# gVisor: the container tests also run under `runsc` (ContainerConfig(runtime="runsc")).
# Registered with dockerd as a runtime (ptrace platform: no KVM here; its own network
# off, as the sandboxes have none; --host-uds=open so a sandbox with network="allowlist"
# can connect to the egress proxy's bound-in unix socket, and nothing else) and picked
# up by dockerd on SIGHUP, no restart. An older registration without it is updated,
# keeping its other arguments.
if ! command -v runsc >/dev/null 2>&1; then
  say "installing runsc (gVisor)"
  apt_install runsc || say "runsc could not be installed; the runsc cases will skip"
fi
if command -v runsc >/dev/null 2>&1 && ! docker info --format '{{json .Runtimes}}' | grep -q 'host-uds=open'; then
  say "registering runsc with dockerd (--host-uds=open)"
  mkdir -p /etc/docker
  python3 - "$(command -v runsc)" <<'PY'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
config = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
old = config.setdefault("runtimes", {}).get("runsc") or {}
args = [a for a in old.get("runtimeArgs", ["--platform=ptrace", "--network=none"])
        if not a.startswith("--host-uds")]
config["runtimes"]["runsc"] = {
    "path": old.get("path", sys.argv[1]),
    "runtimeArgs": [*args, "--host-uds=open"],
}
path.write_text(json.dumps(config, indent=2) + "\n")
PY
  kill -HUP "$(pgrep -xo dockerd)"
  for _ in $(seq 1 20); do
    docker info --format '{{json .Runtimes}}' | grep -q 'host-uds=open' && break
    sleep 0.25
  done
fi
if docker info --format '{{json .Runtimes}}' | grep -q runsc; then
  docker run --rm --runtime=runsc --network none "$IMAGE" python3 -c "import platform; print('docker.sh: runsc kernel', platform.release())" \
    || say "runsc is registered but cannot run containers here; the runsc cases will skip"
fi
