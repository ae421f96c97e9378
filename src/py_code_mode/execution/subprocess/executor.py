"""Subprocess executor: agent code runs in a child Python process (the default).

The child runs the shared worker runtime (:mod:`py_code_mode.worker`) with the
interpreter of a virtual environment made by ``uv`` and speaks the framed JSON
protocol of :mod:`py_code_mode.worker.wire` over a socket pair. Namespace calls
come back to this process, where tools, storage and credentials live.

Environments. By default the venv is cached under the cache directory, keyed by
the Python version and interpreter and the set of deps (configured plus stored), and
created under a file lock, so concurrent sessions never race and a session whose
deps are cached starts without touching the network. A cached venv is shared by
every session with the same key, so it is never modified after creation:
``deps.add`` at run time installs into a per-session overlay directory that sits
in front of the venv on ``sys.path`` (``uv pip install --target``), and
``deps.remove`` uninstalls from that overlay. Packages of the cached venv itself
stay importable until the session restarts; since ``deps.remove`` drops them from
the stored deps list, the next session gets a venv without them. With
``venv_path`` (your own venv) or ``cache_venv=False`` (a private throw-away venv)
installs and uninstalls go straight into the venv.

Faults. A run past its timeout is interrupted (``KeyboardInterrupt`` in the
worker); if it does not stop within ``interrupt_grace`` seconds the worker's whole
process group is killed and the next run starts a fresh worker. A worker that dies
(``os._exit``, a crash, a kill, the kernel's OOM killer) yields an error result
naming the cause. The worker gets a scrubbed environment, its own working
directory and resource limits; it kills its process group when this process goes
away, so no worker outlives its host.

POSIX only (it relies on ``fcntl``, ``resource`` and process groups).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from py_code_mode.errors import DependencyError, ExecutorError
from py_code_mode.execution._configured import resolve_env
from py_code_mode.execution._isolated.client import WorkerDiedError, start_failure
from py_code_mode.execution._isolated.process import WorkerProcess, popen_worker
from py_code_mode.execution._isolated.runner import WorkerRunner
from py_code_mode.execution._isolated.source import worker_root
from py_code_mode.execution.subprocess.config import SubprocessConfig
from py_code_mode.execution.subprocess.interpreter import resolve_interpreter
from py_code_mode.execution.subprocess.venv import Venv, default_cache_dir, prepare_venv

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = ["SubprocessConfig", "SubprocessExecutor"]

_ENV_ALLOWLIST = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


class SubprocessExecutor(WorkerRunner[SubprocessConfig, WorkerProcess]):
    """Runs agent code in a child Python process with its own environment.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: SubprocessConfig | None = None) -> None:
        super().__init__(config, SubprocessConfig)
        self._venv: Venv | None = None
        self._scratch: Path | None = None
        self._workdir: Path | None = None
        self._worker_root: Path | None = None
        self._env: dict[str, str] = {}

    @property
    def worker_pid(self) -> int | None:
        """Process id of the live worker, if any (for diagnostics and tests)."""
        handle = self._handle
        return None if handle is None or handle.dead.is_set() else handle.pid

    @property
    def venv_path(self) -> Path | None:
        """The virtual environment the worker runs in, once started."""
        return None if self._venv is None else self._venv.path

    # -- PackageEnvironment ----------------------------------------------------------
    async def install(self, specs: Sequence[str]) -> str:
        """Install packages so the running worker can import them.

        Into the session's overlay when the venv is cached and shared, else into the
        venv itself. Specs the environment already satisfies are skipped.
        """
        venv = self._require_venv()
        async with self._install_lock:
            return await venv.install(specs, timeout=self.config.install_timeout)

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall packages (from the overlay when the venv is shared)."""
        venv = self._require_venv()
        async with self._install_lock:
            return await venv.uninstall(names, timeout=self.config.install_timeout)

    # -- environment -------------------------------------------------------------------
    def _require_venv(self) -> Venv:
        if self._venv is None:
            raise DependencyError("the executor is not started, so it has no environment yet")
        return self._venv

    async def _prepare(self, host: Host) -> None:
        """Find the interpreter, make the scratch dir and the venv, copy the worker."""
        config = self.config
        wanted = list(dict.fromkeys([*self.configured_deps, *await host.storage.list_deps()]))
        spec = None if config.python_version is None else str(config.python_version)
        interpreter = await asyncio.to_thread(resolve_interpreter, spec)
        cache_dir = config.cache_dir or default_cache_dir()
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="py-code-mode-"))
        self._scratch = scratch
        self._venv = await prepare_venv(
            interpreter,
            wanted,
            cache_dir=cache_dir,
            scratch=scratch,
            venv_path=config.venv_path,
            cache_venv=config.cache_venv,
            timeout=config.install_timeout,
        )
        self._workdir = config.working_dir or scratch / "work"
        await asyncio.to_thread(self._workdir.mkdir, parents=True, exist_ok=True)
        self._worker_root = await asyncio.to_thread(worker_root, cache_dir)
        self._env = self._worker_env(self._venv)

    def _worker_env(self, venv: Venv) -> dict[str, str]:
        """The host's allowlisted variables, the configured ones, and the venv's paths."""
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _ENV_ALLOWLIST or name.startswith("LC_")
        }
        env.update(resolve_env(self.config.env))
        env["PATH"] = os.pathsep.join([*venv.bin_dirs(), env.get("PATH") or os.defpath])
        env["VIRTUAL_ENV"] = str(venv.path)
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return env

    async def _cleanup(self) -> None:
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    # -- workers -----------------------------------------------------------------------
    async def _spawn(self) -> WorkerProcess:
        assert self._venv is not None
        assert self._host is not None
        assert self._worker_root is not None
        assert self._workdir is not None
        config = self.config
        venv = self._venv
        host_sock, child_sock = socket.socketpair()
        try:
            proc = popen_worker(
                venv.python, self._worker_root, child_sock.fileno(), self._env, self._workdir
            )
        except OSError as exc:
            host_sock.close()
            raise ExecutorError(f"could not start the worker with {venv.python}: {exc}") from exc
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_unix_connection(sock=host_sock)
        handle = WorkerProcess(
            proc,
            reader,
            writer,
            self._host,
            max_frame=self._max_frame,
            output_limit=config.output_limit,
        )
        try:
            memory_mb = None if config.memory_limit is None else config.memory_limit >> 20
            async with asyncio.timeout(config.startup_timeout):
                await handle.configure(
                    limits={
                        "memory_mb": memory_mb,
                        "max_processes": config.max_processes,
                        "max_open_files": config.max_open_files,
                        "max_file_size_mb": config.max_file_size_mb,
                    },
                    site_dirs=[] if venv.overlay is None else [str(venv.overlay)],
                    sys_path=[str(self._workdir)],
                )
        except (TimeoutError, WorkerDiedError, ExecutorError) as exc:
            await handle.kill("failed to start")
            raise start_failure(
                exc, f"worker process ({venv.python})", config.startup_timeout, handle.stderr_tail
            ) from None
        return handle
