"""Per-session temporary directories named after their owner, and the sweep of stale ones.

A session's scratch directory (the subprocess executor's package overlay and working
directory, the egress proxy's socket directory) is removed when the session closes,
is garbage-collected, or the process exits. A host killed outright (SIGKILL, the OOM
killer, a power cut) removes nothing, so every directory carries its owner's pid in
its name, ``py-code-mode-[<kind>-]<pid>-<random>``, and the first one a process makes
sweeps those whose owner is gone, the way the container reaper removes containers.

The sweep is deliberately narrow: only entries of the temp directory with our prefix
and a pid field, only real directories (never a symlink) owned by this user, and only
when no process has that pid. A reused pid keeps a stale directory until that process
ends too, which errs on the safe side.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from pathlib import Path

__all__ = ["PREFIX", "make_scratch", "owner_pid", "sweep_stale"]

logger = logging.getLogger(__name__)

PREFIX = "py-code-mode-"
_NAME = re.compile(r"py-code-mode-(?:[a-z]+-)?(?P<pid>[1-9][0-9]{0,9})-[A-Za-z0-9_]+")
_PID_MAX = 2**31 - 1  # pid_t; a larger field is no pid we wrote (os.kill would overflow)
_swept: set[str] = set()
_sweep_lock = threading.Lock()


def owner_pid(name: str) -> int | None:
    """The owner pid in one of our directory names, or None for any other name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    pid = int(match["pid"])
    return pid if pid <= _PID_MAX else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(root: Path | None = None) -> list[Path]:
    """Remove our directories in ``root`` (the temp dir) whose owner process is gone.

    Blocking. Returns what was removed.
    """
    base = Path(tempfile.gettempdir()) if root is None else root
    removed: list[Path] = []
    try:
        names = [name for name in os.listdir(base) if name.startswith(PREFIX)]
    except OSError:
        return removed
    me = os.getpid()
    uid = os.geteuid()
    for name in names:
        pid = owner_pid(name)
        if pid is None or pid == me or _alive(pid):
            continue
        path = base / name
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue  # a symlink, a file, or someone else's: never ours to remove
        # rmtree never follows symlinks inside the tree (it walks by directory fd).
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        logger.info("removed %d directories left by processes that died", len(removed))
    return removed


def make_scratch(kind: str = "") -> Path:
    """A new private (0700) directory for one session; blocking.

    Args:
        kind: A lowercase word naming what it is for (``"egress"``), or "" for a
            session's scratch directory.
    """
    base = tempfile.gettempdir()
    with _sweep_lock:
        if base not in _swept:
            _swept.add(base)
            with contextlib.suppress(OSError):
                sweep_stale(Path(base))
    infix = f"{kind}-" if kind else ""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{infix}{os.getpid()}-", dir=base))
