"""Running ``uv`` (bundled as a dependency) for environments and package installs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence

from py_code_mode.errors import DependencyError

__all__ = ["run_uv", "uv_binary"]

logger = logging.getLogger(__name__)

DEFAULT_INSTALL_TIMEOUT = 600.0


def uv_binary() -> str:
    """Path of the ``uv`` executable: the bundled one, else one on PATH.

    Raises:
        DependencyError: No ``uv`` can be found.
    """
    try:  # the bundled uv wheel may be missing (distro packages): fall back to PATH
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise DependencyError("uv was not found; install it with 'pip install uv' and try again")


async def run_uv(
    args: Sequence[str],
    *,
    timeout: float = DEFAULT_INSTALL_TIMEOUT,
    env: Mapping[str, str] | None = None,
    what: str = "uv",
) -> str:
    """Run ``uv`` with an argv list; return its combined output.

    Raises:
        DependencyError: Non-zero exit (with the output's tail) or timeout.
    """
    argv = [uv_binary(), *args]
    logger.debug("running %s", argv)
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DependencyError(f"{what} timed out after {timeout:g} s") from None
    except asyncio.CancelledError:
        # Nobody waits for this install any more (a killed worker, a closed session):
        # it must not go on changing the environment behind the next one.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise DependencyError(f"{what} failed (exit {proc.returncode}):\n{text[-3000:].strip()}")
    return text
