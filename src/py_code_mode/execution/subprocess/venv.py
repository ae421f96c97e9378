"""The subprocess executor's virtual environments, made and changed with ``uv``.

Three kinds (see :func:`prepare_venv`):

* **Cached** (the default): under ``<cache dir>/venvs``, keyed by the interpreter and
  the set of deps, created once under a file lock so concurrent sessions never race,
  and marked complete only at the end. Shared by every session with the same key,
  so it is never changed after creation: runtime installs go to a per-session
  overlay directory in front of it on ``sys.path`` (``uv pip install --target``).
* **Private** (``cache_venv=False``): made in the session's scratch directory and
  deleted with it; installs go straight in.
* **Own** (``venv_path``): the user's venv, created when missing; installs go
  straight in.

Everything blocking here runs in a thread; ``uv`` runs as an asyncio subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from py_code_mode._private.installed import installed_in, missing_from
from py_code_mode._private.uv import run_uv
from py_code_mode.errors import ConfigError, ExecutorError
from py_code_mode.execution.subprocess.interpreter import MIN_PYTHON, Interpreter, probe_version

__all__ = ["Venv", "default_cache_dir", "file_lock", "prepare_venv", "venv_key"]

logger = logging.getLogger(__name__)

VENV_MARKER = ".py-code-mode-venv.json"
"""Written last into a cached venv: its presence means the venv is complete."""

LOCK_TIMEOUT = 1800.0


@dataclass(slots=True)
class Venv:
    """A virtual environment a worker runs in, and where runtime installs go."""

    path: Path
    python: Path
    site_packages: Path
    shared: bool
    """Cached and shared by key: never modified, runtime installs use the overlay."""
    overlay: Path | None = None
    """This session's package directory in front of a shared venv."""

    def bin_dirs(self) -> list[str]:
        """Directories of executables, in ``PATH`` order."""
        bins = [str(self.path / "bin")]
        if self.overlay is not None:
            bins.insert(0, str(self.overlay / "bin"))
        return bins

    async def install(
        self, specs: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> str:
        """Install the specs not satisfied yet (into the overlay when shared).

        ``env`` is added to uv's environment (the egress proxy of an allowlisted jail).

        Raises:
            DependencyError: ``uv`` failed or timed out.
        """
        paths = [self.site_packages]
        if self.overlay is not None:
            paths.insert(0, self.overlay)
        missing = await asyncio.to_thread(missing_from, list(specs), paths)
        if not missing:
            return f"already installed: {', '.join(specs)}"
        args = ["pip", "install", "--python", str(self.python)]
        if self.shared:
            assert self.overlay is not None
            args += ["--target", str(self.overlay)]
        return await run_uv([*args, *missing], timeout=timeout, env=env, what="uv pip install")

    async def uninstall(self, names: Sequence[str], *, timeout: float) -> str:
        """Uninstall distributions (only from the overlay when shared).

        Raises:
            DependencyError: ``uv`` failed or timed out.
        """
        if not self.shared:
            return await run_uv(
                ["pip", "uninstall", "--python", str(self.python), *names],
                timeout=timeout,
                what="uv pip uninstall",
            )
        assert self.overlay is not None
        in_overlay = await asyncio.to_thread(installed_in, [self.overlay])
        removable = [n for n in names if canonicalize_name(n) in in_overlay]
        kept = [n for n in names if canonicalize_name(n) not in in_overlay]
        output = ""
        if removable:
            output = await run_uv(
                [
                    "pip",
                    "uninstall",
                    "--python",
                    str(self.python),
                    "--target",
                    str(self.overlay),
                    *removable,
                ],
                timeout=timeout,
                what="uv pip uninstall",
            )
        in_venv = await asyncio.to_thread(installed_in, [self.site_packages])
        shared = [n for n in kept if canonicalize_name(n) in in_venv]
        if shared:
            output += (
                f"\n{', '.join(shared)}: part of the shared cached environment this session "
                "started with, so it stays importable until the session restarts; sessions "
                "started after it left the deps list will not have it."
            )
        return output.strip()


def default_cache_dir() -> Path:
    """``$PY_CODE_MODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/py-code-mode``, else ``~/.cache/...``."""
    explicit = os.environ.get("PY_CODE_MODE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "py-code-mode"


def _spec_key(spec: str) -> str:
    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{canonicalize_name(req.name)}{extras}{req.specifier}"


def venv_key(interpreter: Interpreter, specs: Sequence[str]) -> str:
    """The cached venv's directory name: the interpreter and the deps set, order-free."""
    material = json.dumps(
        {
            "python": ".".join(map(str, interpreter.version)),
            "interpreter": interpreter.path,
            "deps": sorted({_spec_key(s) for s in specs}),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    return f"py{interpreter.version[0]}{interpreter.version[1]}-{digest}"


def _site_packages(venv: Path, interpreter: Interpreter) -> Path:
    return venv / "lib" / f"python{interpreter.short}" / "site-packages"


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.asynccontextmanager
async def file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path``, waited for without blocking the event loop.

    Raises:
        ExecutorError: Still held by another process after :data:`LOCK_TIMEOUT` s.
    """
    fd = await asyncio.to_thread(_open_lock_file, path)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ExecutorError(
                        f"timed out waiting for the lock {path}; another process is still "
                        "creating this environment (delete the lock file if none is)"
                    ) from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _needs_venv(path: Path) -> bool:
    """True when ``path`` is missing or empty; ConfigError when it holds something else."""
    if (path / "bin" / "python").exists():
        return False
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(
            f"venv_path {path} exists but is not a virtual environment (no bin/python)"
        )
    return True


def _remove_leftover(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


async def _create(path: Path, interpreter: Interpreter, timeout: float) -> None:
    await run_uv(
        ["venv", "--quiet", "--no-python-downloads", "--python", interpreter.path, str(path)],
        timeout=timeout,
        what=f"uv venv {path}",
    )


async def _install_into(path: Path, specs: Sequence[str], timeout: float) -> None:
    await run_uv(
        ["pip", "install", "--python", str(path / "bin" / "python"), *specs],
        timeout=timeout,
        what="uv pip install",
    )


async def prepare_venv(
    interpreter: Interpreter,
    specs: list[str],
    *,
    cache_dir: Path,
    scratch: Path,
    venv_path: Path | None,
    cache_venv: bool,
    timeout: float,
) -> Venv:
    """The venv a session's workers run in, with ``specs`` installed.

    Args:
        interpreter: The Python the venv is made from.
        specs: Requirement specs the venv must satisfy.
        cache_dir: Where cached venvs and lock files live.
        scratch: The session's private directory (private venvs, the overlay).
        venv_path: The user's own venv, if given.
        cache_venv: Use a cached, shared venv (else a private one).
        timeout: Seconds one ``uv`` call may take.

    Raises:
        ConfigError: ``venv_path`` is not a venv, or its Python is too old.
        DependencyError: Creating the venv or installing failed.
        ExecutorError: A lock was held too long.
    """
    if venv_path is not None:
        path = await asyncio.to_thread(venv_path.resolve)
        lock = cache_dir / "locks" / (hashlib.sha256(str(path).encode()).hexdigest()[:16])
        async with file_lock(lock):
            return await _own(path, interpreter, specs, timeout)
    if not cache_venv:
        path = scratch / "venv"
        await _create(path, interpreter, timeout)
        if specs:
            await _install_into(path, specs, timeout)
        return Venv(path, path / "bin" / "python", _site_packages(path, interpreter), False)
    venv = await _cached(interpreter, specs, cache_dir, timeout)
    venv.overlay = scratch / "site-packages"
    await asyncio.to_thread(venv.overlay.mkdir)
    return venv


async def _cached(
    interpreter: Interpreter, specs: list[str], cache_dir: Path, timeout: float
) -> Venv:
    path = cache_dir / "venvs" / venv_key(interpreter, specs)
    venv = Venv(path, path / "bin" / "python", _site_packages(path, interpreter), True)
    marker = path / VENV_MARKER
    if await asyncio.to_thread(marker.is_file):
        return venv
    async with file_lock(path.with_name(path.name + ".lock")):
        if await asyncio.to_thread(marker.is_file):
            return venv  # another session finished it while we waited
        logger.info("creating a cached environment for %d package(s) at %s", len(specs), path)
        await asyncio.to_thread(_remove_leftover, path)  # left by an interrupted attempt
        await _create(path, interpreter, timeout)
        if specs:
            await _install_into(path, specs, timeout)
        info = {"python": interpreter.path, "version": ".".join(map(str, interpreter.version))}
        text = json.dumps({**info, "deps": sorted(specs)})
        await asyncio.to_thread(marker.write_text, text)
    return venv


async def _own(path: Path, interpreter: Interpreter, specs: list[str], timeout: float) -> Venv:
    python = path / "bin" / "python"
    if await asyncio.to_thread(_needs_venv, path):
        await _create(path, interpreter, timeout)
    version = await asyncio.to_thread(probe_version, str(python))
    if version is None or version[:2] < MIN_PYTHON:
        raise ConfigError(
            f"venv_path {path}: its python does not run or is older than 3.11 "
            f"(found {version}); the worker needs Python 3.11 or newer"
        )
    own = Interpreter(str(python), version)
    venv = Venv(path, python, _site_packages(path, own), False)
    if specs:
        await venv.install(specs, timeout=timeout)
    return venv
