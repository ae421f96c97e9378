"""The jail of tool programs: the same bubblewrap jail as the subprocess worker.

Tools run on the host so their credentials stay there, which makes each tool a door
out of every sandbox. Each CLI tool call, and each stdio MCP server for as long as
its connection lives, therefore runs in a fresh jail that sees the system
directories read-only, the tool's executable, and only the paths its YAML declares
(``paths:``, read-only; an MCP server's ``writable_paths:`` read-write); a private
``/tmp`` as working directory; no host home, storage base, docker socket or
``/proc`` of the host. The environment is whatever the caller gives the process
(bwrap passes it through), so the rules for a tool's env live in one place.

A jail never shares the host's network namespace: it has only its own ``lo``. With
``network: true`` the caller passes its egress proxy's unix socket, which is bound
in, and the jail runs :mod:`py_code_mode.worker.egress` as a launcher in front of
the tool: a forwarder on the jail's ``127.0.0.1`` piped to the socket, with
``HTTP(S)_PROXY``/``ALL_PROXY`` pointing at it. Proxy-aware clients get out through
the proxy's checks; anything else (raw sockets, ``git://``, ``dig``, a client that
ignores the variables) finds no route, and names it would resolve itself don't
resolve (the jail has no DNS). The launcher runs on the system ``/usr/bin/python3``
when there is one (already visible: ``/usr`` is bound), else on the host's own
interpreter, whose installation is then bound read-only.

Where bubblewrap is not available, calls run unjailed with one warning in the log,
and ``doctor`` says so. ``PY_CODE_MODE_TOOL_JAIL=off`` turns the jail off explicitly
(same warning), for tools that must see the whole host.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from py_code_mode._private import jail
from py_code_mode.worker import egress as _launcher

__all__ = ["TOOL_TMP_SIZE", "jailed_tool_argv", "tool_jail_status"]

logger = logging.getLogger(__name__)

TOOL_TMP_SIZE = 256 << 20
"""Cap of a tool call's private ``/tmp``."""

_SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")
_SYSTEM_PYTHON = "/usr/bin/python3"
_LAUNCHER = os.path.realpath(_launcher.__file__)
_warned: set[str] = set()


def tool_jail_status() -> tuple[bool, str]:
    """Whether tool calls run jailed here, and the detail (blocking on first call)."""
    found = _probe()
    return found.usable, found.detail


def _probe() -> jail.JailProbe:
    """The jail tool calls get: none when ``PY_CODE_MODE_TOOL_JAIL`` turns it off (blocking)."""
    if os.environ.get("PY_CODE_MODE_TOOL_JAIL", "").lower() in ("off", "0", "false", "no"):
        return jail.JailProbe(None, False, "turned off by PY_CODE_MODE_TOOL_JAIL")
    return jail.probe()


def _resolve(command: str) -> str | None:
    if os.sep in command:
        path = os.path.abspath(command)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(command)


async def jailed_tool_argv(
    argv: Sequence[str],
    *,
    paths: Sequence[str] = (),
    writable: Sequence[str] = (),
    egress_socket: Callable[[], Awaitable[str]] | None = None,
    cwd: str | None = None,
) -> list[str]:
    """``argv`` run in a per-call jail, or unchanged (with one warning) where none exists.

    Args:
        argv: The tool's command and arguments.
        paths: Host paths the tool's YAML declares, bound read-only (already resolved
            by :func:`~py_code_mode.tools.models.resolve_host_paths`: absolute, ``~``
            expanded, links followed).
        writable: Host paths bound read-write (resolved the same way).
        egress_socket: For ``network: true``, what gives the unix socket of the
            tool's egress proxy (called only when the call is jailed): it is bound
            in, with the launcher's forwarder in front of the tool (see the module
            doc). None: no network at all.
        cwd: The working directory on the host (one of the declared paths,
            visible at the same place in the jail); the call's private ``/tmp`` if None.
    """
    found = await asyncio.to_thread(_probe)
    if not found.usable or found.bwrap is None:
        if found.detail not in _warned:
            _warned.add(found.detail)
            logger.warning(
                "CLI tools and stdio MCP servers run WITHOUT a jail (they see all your files "
                "and the network): %s",
                found.detail,
            )
        return list(argv)
    command = _resolve(argv[0])
    if command is None:
        return list(argv)  # starting it fails as it would unjailed: command not found
    visible = await asyncio.to_thread(_visible_paths, command, paths)
    run = [command, *argv[1:]]
    if egress_socket is not None:
        socket_path = await egress_socket()
        python, installation = await asyncio.to_thread(_launcher_python)
        visible += [*installation, Path(_LAUNCHER), Path(socket_path)]
        run = [python, "-I", "-S", _LAUNCHER, "--socket", socket_path, "--", *run]
    spec = jail.JailSpec(
        read_only=tuple(visible),
        read_write=tuple(Path(p) for p in writable),
        tmpfs_size=TOOL_TMP_SIZE,
        network=False,
        env=None,
        cwd=Path(cwd) if cwd is not None else Path("/tmp"),  # noqa: S108 - private tmpfs
        hostname="tool",
    )
    return jail.jail_argv(found.bwrap, spec, run)


@functools.cache
def _launcher_python() -> tuple[str, tuple[Path, ...]]:
    """The interpreter that runs the launcher in the jail, and what to bind for it.

    The system python3 when it is recent enough for the launcher (3.8: posix_spawnp),
    checked once; else the host's own interpreter (blocking).
    """
    try:
        done = subprocess.run(
            [_SYSTEM_PYTHON, "-I", "-S", "-c", "import sys; print(sys.version_info >= (3, 8))"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if done.stdout.strip() == "True":
            return _SYSTEM_PYTHON, ()
    except (OSError, subprocess.TimeoutExpired):
        pass
    base = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    return base, jail.interpreter_paths(Path(sys.executable))


def _visible_paths(command: str, paths: Sequence[str]) -> list[Path]:
    """The executable's own files and the declared paths, resolved (blocking)."""
    visible: list[Path] = []
    real = os.path.realpath(command)
    venv = Path(command).parent.parent
    if (venv / "pyvenv.cfg").is_file():  # a venv's python: the venv and its base install
        visible += [venv, *jail.interpreter_paths(Path(command))]
    elif Path(real).name.startswith("python") and not real.startswith(_SYSTEM_PREFIXES):
        visible += jail.interpreter_paths(Path(real))
    elif not real.startswith(_SYSTEM_PREFIXES):
        visible.append(Path(real).parent)  # a script the tool ships, or a tool outside /usr
    visible += map(Path, paths)
    return visible
