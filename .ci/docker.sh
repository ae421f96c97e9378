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
