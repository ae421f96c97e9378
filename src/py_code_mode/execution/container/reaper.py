"""Labels naming a container's owner, and removal of containers whose owner died.

Every container is labelled with the owning process (pid, its start time, hostname).
When the host process dies, the attached stdin closes and the worker ends its
container; containers left by a process that died anyway are removed by
:func:`reap_strays` on the next start on the same machine. The start time tells a
reused pid from the original owner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading

from py_code_mode.execution.container.engine import api, docker_errors

__all__ = [
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_START",
    "LABEL_POOL",
    "LABEL_SESSION",
    "owner_labels",
    "reap_once",
    "reap_strays",
]

logger = logging.getLogger(__name__)

LABEL_PREFIX = "py-code-mode."
LABEL_SESSION = LABEL_PREFIX + "session"
LABEL_OWNER_PID = LABEL_PREFIX + "owner-pid"
LABEL_OWNER_START = LABEL_PREFIX + "owner-start"
LABEL_OWNER_HOST = LABEL_PREFIX + "owner-host"
LABEL_POOL = LABEL_PREFIX + "pool"

_reaped = threading.Event()


def _process_start(pid: int) -> str:
    """The start time of ``pid`` (clock ticks since boot), or "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _owner_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _process_start(pid) in ("", start)


def owner_labels() -> dict[str, str]:
    """The labels that name this process as a container's owner."""
    pid = os.getpid()
    return {
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: _process_start(pid),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def reap_strays() -> int:
    """Remove this machine's containers whose owner is gone; how many (blocking).

    Raises:
        ExecutorError: No Docker engine is reachable.
    """
    client = api()
    errors = docker_errors()
    host = socket.gethostname()
    removed = 0
    try:
        found = client.containers(all=True, filters={"label": LABEL_OWNER_PID})
    except errors.APIError as exc:
        logger.warning("could not list containers to clean up strays: %s", exc)
        return 0
    for info in found:
        labels = info.get("Labels") or {}
        if labels.get(LABEL_OWNER_HOST) != host:
            continue
        try:
            pid = int(labels.get(LABEL_OWNER_PID, ""))
        except ValueError:
            continue
        if _owner_alive(pid, labels.get(LABEL_OWNER_START, "")):
            continue
        with contextlib.suppress(errors.NotFound, errors.APIError):
            client.remove_container(info["Id"], force=True)
            removed += 1
    if removed:
        logger.info("removed %d container(s) left behind by processes that died", removed)
    return removed


def reap_once() -> None:
    """:func:`reap_strays`, the first time it is called in this process (blocking)."""
    if not _reaped.is_set():
        _reaped.set()
        reap_strays()
