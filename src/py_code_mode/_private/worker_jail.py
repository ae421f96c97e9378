"""A subprocess session's jail: the bwrap spec of its workers and its cgroup.

One per session. Every worker the session starts (the first, and fresh ones after a
timeout, crash or reset) runs in the same jail spec and joins the same cgroup, so the
session's memory and process limits hold across all of them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from py_code_mode._private import cgroups, jail

__all__ = [
    "ISOLATION_MODES",
    "WorkerJail",
    "effective_isolation",
    "open_worker_jail",
    "process_tree",
]

ISOLATION_MODES = ("bwrap", "none")

JAIL_WORKDIR = Path("/work")
"""The worker's private working directory inside the jail (a tmpfs)."""


def effective_isolation(isolation: str | None) -> str:
    """The isolation a config asks for: its own, else bubblewrap on Linux, none elsewhere."""
    if isolation is not None:
        return isolation
    return "bwrap" if sys.platform.startswith("linux") else "none"


@dataclass(slots=True)
class WorkerJail:
    """The jail spec of a session's workers and the cgroup they share."""

    bwrap: str
    spec: jail.JailSpec
    cgroup: cgroups.SessionCgroup | None

    def wrap(self, argv: list[str]) -> list[str]:
        """The worker's argv run inside the jail (and the session's cgroup)."""
        command = jail.jail_argv(self.bwrap, self.spec, argv)
        return command if self.cgroup is None else self.cgroup.wrap(command)

    @property
    def workdir(self) -> Path:
        """The working directory as the worker sees it."""
        return self.spec.cwd

    async def kill_all(self) -> None:
        """Kill every process of the session and wait (briefly) until they are gone."""
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.kill_all, 2.0)

    async def close(self) -> None:
        """Kill what is left and remove the cgroup."""
        if self.cgroup is not None:
            await asyncio.to_thread(self.cgroup.close)


async def open_worker_jail(
    *,
    python: Path,
    read_only: Sequence[Path],
    workdir: Path | None,
    env: Mapping[str, str],
    tmpfs_size: int,
    memory_bytes: int | None,
    max_pids: int | None,
    opt_out: str,
    network: bool = False,
) -> WorkerJail:
    """Check bwrap works here, make the session's cgroup and the workers' spec.

    Args:
        python: The venv's interpreter.
        read_only: The venv, the worker's code and the session's overlay.
        workdir: A host directory the user shares as the working directory (bound
            read-write), or None for a private tmpfs.
        env: The worker's environment.
        tmpfs_size: Cap of the private tmpfs mounts, bytes.
        memory_bytes: The session's memory limit (cgroup), if any.
        max_pids: The session's process and thread limit (cgroup), if any.
        opt_out: How the user runs without a jail, for the error.
        network: Share the host's network with the jail.

    Raises:
        JailUnavailableError: bwrap is missing or cannot make namespaces here.
    """
    bwrap = await asyncio.to_thread(jail.require_jail, "The subprocess executor", opt_out)
    spec = jail.worker_spec(
        python=python,
        read_only=read_only,
        read_write=() if workdir is None else (workdir,),
        workdir=JAIL_WORKDIR if workdir is None else workdir,
        private_workdir=workdir is None,
        env=env,
        tmpfs_size=tmpfs_size,
        network=network,
    )
    group = await asyncio.to_thread(
        cgroups.create_session_cgroup, memory_bytes=memory_bytes, max_pids=max_pids
    )
    return WorkerJail(bwrap, spec, group)


def process_tree(root: int) -> tuple[list[int], int]:
    """Host pids of ``root`` and its descendants, and their total thread count.

    Read from ``/proc`` (blocking, a few milliseconds). Processes that left the tree
    (double forks reparented to the jail's init stay in it, since that init is a
    descendant of ``root``) are counted; anything unreadable is skipped.
    """
    walked = _walk_children(root)
    if walked is not None:
        return walked
    parents: dict[int, list[int]] = {}
    threads: dict[int, int] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return [root], 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] in (b"Z", b"X"):
            continue
        pid = int(name)
        parents.setdefault(int(fields[1]), []).append(pid)
        threads[pid] = int(fields[17])
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in threads:
            found.append(pid)
        todo.extend(parents.get(pid, ()))
    return found, sum(threads[p] for p in found)


def _walk_children(root: int) -> tuple[list[int], int] | None:
    """The tree from ``/proc/<pid>/task/<tid>/children``; None where the kernel lacks it."""
    found: list[int] = []
    total = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        found.append(pid)
        total += len(tids)
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                    todo.extend(int(child) for child in fh.read().split())
            except FileNotFoundError:
                if pid == root:
                    return None
            except OSError:
                continue
    return found, total
