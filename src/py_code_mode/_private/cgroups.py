"""Per-session memory and process limits with cgroups, where the host lets us make them.

A jailed worker's limits must hold for the session, not per process: ``RLIMIT_AS``
is per process (four children each get the full amount) and ``RLIMIT_NPROC`` counts
per user. A cgroup caps the sum. We create one cgroup per session under the cgroup
this process is in: with cgroup v2 when its ``memory`` and ``pids`` controllers can be
delegated there, else with the v1 ``memory`` and ``pids`` hierarchies (hybrid hosts).
Creating them needs write access to those directories (root, or a delegated subtree);
where that fails the limits are reported as not enforced (``doctor`` says so), and the
per-process rlimits of the worker still apply.

A process joins the cgroup before it executes anything: :meth:`SessionCgroup.wrap`
prefixes a command with a tiny ``sh`` that writes its own pid into the cgroup and then
``exec``s the command, so nothing forks outside the limits.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CgroupSupport", "SessionCgroup", "create_session_cgroup", "support"]

logger = logging.getLogger(__name__)

_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count(1)
_TRAMPOLINE = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; '
    'n=$((n-1)); done; exec "$@"'
)


@dataclass(frozen=True, slots=True)
class CgroupSupport:
    """Where session cgroups can be made here: the parent directory per controller."""

    version: str  # "v2", "v1" or "" (none)
    parents: dict[str, Path]
    detail: str


@dataclass(slots=True)
class SessionCgroup:
    """One session's cgroup (one directory per hierarchy on v1)."""

    dirs: list[Path]
    version: str
    _closed: bool = field(default=False, repr=False)

    def wrap(self, command: Sequence[str]) -> list[str]:
        """``command`` prefixed so that it joins this cgroup before it runs."""
        procs = [str(d / "cgroup.procs") for d in self.dirs]
        return ["/bin/sh", "-c", _TRAMPOLINE, "sh", str(len(procs)), *procs, *command]

    def pids(self) -> set[int]:
        """Processes in the cgroup now."""
        found: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                text = (directory / "cgroup.procs").read_text()
                found.update(int(line) for line in text.split())
        return found

    def kill_all(self, wait: float = 0.0) -> None:
        """SIGKILL every process in the cgroup (escaped double forks included).

        Args:
            wait: Seconds to wait for the cgroup to be empty (blocking).
        """
        deadline = time.monotonic() + wait
        self._kill_once()
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
            self._kill_once()

    def _kill_once(self) -> None:
        for directory in self.dirs:
            kill = directory / "cgroup.kill"
            if kill.exists():
                with contextlib.suppress(OSError):
                    kill.write_text("1")
        for _ in range(3):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Kill what is left and remove the cgroup. Idempotent; blocking (call off-loop)."""
        if self._closed:
            return
        self._closed = True
        self.kill_all()
        deadline = time.monotonic() + 2.0
        for directory in self.dirs:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        logger.warning("could not remove cgroup %s", directory)
                        break
                    self.kill_all()
                    time.sleep(0.02)


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and ``""`` for the v2 one."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            if controllers == "":
                paths[""] = path
            for name in controllers.split(","):
                if name:
                    paths[name] = path
    return paths


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _detect() -> CgroupSupport:
    own = _own_paths()
    controllers = _ROOT / "cgroup.controllers"
    if controllers.exists() and "" in own:  # pure v2
        parent = _ROOT / own[""].lstrip("/")
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
        missing = {"memory", "pids"} - enabled
        if missing and _writable(parent):
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text(
                    " ".join(f"+{name}" for name in sorted(missing))
                )
                missing = set()
        if missing or not _writable(parent):
            return CgroupSupport(
                "",
                {},
                f"cgroup v2 at {parent} does not delegate {sorted(missing) or 'writes'} to us "
                "(run as root or under a delegated systemd scope)",
            )
        return CgroupSupport("v2", {"memory": parent, "pids": parent}, f"cgroup v2 at {parent}")
    parents: dict[str, Path] = {}
    for name in ("memory", "pids"):
        if name in own and _writable(_ROOT / name):
            parent = _ROOT / name / own[name].lstrip("/")
            if _writable(parent):
                parents[name] = parent
    if parents:
        found = ", ".join(sorted(parents))
        return CgroupSupport("v1", parents, f"cgroup v1 ({found})")
    return CgroupSupport("", {}, "no writable cgroup hierarchy (needs root or delegation)")


@functools.cache
def support() -> CgroupSupport:
    """What this host lets us enforce (checked once per process)."""
    try:
        return _detect()
    except OSError as exc:
        return CgroupSupport("", {}, f"cgroups unreadable: {exc}")


def _sweep(parents: list[Path]) -> None:
    """Remove empty session cgroups left by processes of ours that died without closing."""
    for parent in parents:
        try:
            entries = list(parent.glob("py-code-mode-*-*"))
        except OSError:
            continue
        for entry in entries:
            owner = entry.name.split("-")[3]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    entry.rmdir()  # fails (and stays) while any process is still in it


_swept: set[str] = set()


def create_session_cgroup(
    *, memory_bytes: int | None, max_pids: int | None
) -> SessionCgroup | None:
    """A new cgroup with these limits, or None when the host lets us make none.

    Blocking (call off the event loop).
    """
    found = support()
    if not found.version or (memory_bytes is None and max_pids is None):
        return None
    if found.version not in _swept:
        _swept.add(found.version)
        _sweep(list(dict.fromkeys(found.parents.values())))
    name = f"py-code-mode-{os.getpid()}-{next(_counter)}"
    made: list[Path] = []
    try:
        if found.version == "v2":
            directory = found.parents["memory"] / name
            directory.mkdir()
            made.append(directory)
            if memory_bytes is not None:
                (directory / "memory.max").write_text(str(memory_bytes))
                with contextlib.suppress(OSError):
                    (directory / "memory.swap.max").write_text("0")
            if max_pids is not None:
                (directory / "pids.max").write_text(str(max_pids))
        else:
            if memory_bytes is not None and "memory" in found.parents:
                directory = found.parents["memory"] / name
                directory.mkdir()
                made.append(directory)
                (directory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if max_pids is not None and "pids" in found.parents:
                directory = found.parents["pids"] / name
                directory.mkdir()
                made.append(directory)
                (directory / "pids.max").write_text(str(max_pids))
    except OSError as exc:
        logger.warning("could not create a session cgroup (%s); limits are per process", exc)
        for directory in made:
            with contextlib.suppress(OSError):
                directory.rmdir()
        return None
    return SessionCgroup(made, found.version)
