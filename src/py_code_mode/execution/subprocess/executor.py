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
import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from py_code_mode._private.scratch import make_scratch
from py_code_mode._private.worker_jail import (
    WorkerJail,
    effective_isolation,
    open_worker_jail,
    process_tree,
)
from py_code_mode._private.worker_pool import PooledWorker, pool
from py_code_mode.errors import DependencyError, ExecutorError
from py_code_mode.execution._configured import resolve_env
from py_code_mode.execution._egress import PROXY_VARS, SOCKET_ENV, SandboxEgress, with_refusals
from py_code_mode.execution._isolated.client import (
    WorkerDiedError,
    replaced_after_timeout,
    start_failure,
)
from py_code_mode.execution._isolated.process import WorkerProcess, popen_worker
from py_code_mode.execution._isolated.runner import WorkerRunner
from py_code_mode.execution._isolated.source import worker_root
from py_code_mode.execution.subprocess.config import SubprocessConfig
from py_code_mode.execution.subprocess.interpreter import resolve_interpreter
from py_code_mode.execution.subprocess.owned import Owned, OwnedField
from py_code_mode.execution.subprocess.venv import Venv, default_cache_dir, prepare_venv
from py_code_mode.result import ExecutionResult

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


async def _readable(sock: socket.socket, timeout: float) -> None:
    """Wait until ``sock`` has data, without reading it."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def mark() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), mark)
    try:
        async with asyncio.timeout(timeout):
            await ready
    finally:
        loop.remove_reader(sock.fileno())


class SubprocessExecutor(WorkerRunner[SubprocessConfig, WorkerProcess]):
    """Runs agent code in a child Python process with its own environment.

    Args:
        config: Settings; defaults when omitted.
    """

    # What the session holds outside this process; freed by close(), else at GC or exit.
    _scratch: OwnedField[Path | None] = OwnedField()
    _jail: OwnedField[WorkerJail | None] = OwnedField()
    _pooled: OwnedField[PooledWorker | None] = OwnedField()
    _egress: OwnedField[SandboxEgress | None] = OwnedField()

    def __init__(self, config: SubprocessConfig | None = None) -> None:
        super().__init__(config, SubprocessConfig)
        self._owned = Owned()
        weakref.finalize(self, self._owned.release, "dropped")
        self._venv: Venv | None = None
        self._workdir: Path | None = None
        self._worker_root: Path | None = None
        self._env: dict[str, str] = {}
        self._baseline_tasks = 0

    @property
    def isolation(self) -> str:
        """``"bwrap"`` when workers run jailed, else ``"none"``."""
        return effective_isolation(self.config.isolation)

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
            return await venv.install(
                specs, timeout=self.config.install_timeout, env=self._install_env()
            )

    def _install_env(self) -> dict[str, str] | None:
        """With ``network="allowlist"``: point the host's uv at the session's proxy."""
        if self._egress is None:
            return None
        proxy = {name: self._egress.url for name in PROXY_VARS}
        return {**proxy, "NO_PROXY": "", "no_proxy": ""}

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
        scratch = await asyncio.to_thread(make_scratch)
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
        self._worker_root = await asyncio.to_thread(worker_root, cache_dir, str(self._venv.python))
        self._env = self._worker_env(self._venv)
        if config.network == "allowlist":
            if self.isolation != "bwrap":
                raise ExecutorError(
                    "network='allowlist' needs the bwrap jail, which is not used here; "
                    "use network='none' or 'full'"
                )
            self._egress = SandboxEgress.of(config)
            await asyncio.to_thread(self._egress.start)
            self._env[SOCKET_ENV] = str(self._egress.socket_path)
        if self.isolation == "bwrap":
            await self._open_jail(self._venv, self._worker_root)

    async def _open_jail(self, venv: Venv, root: Path) -> None:
        config = self.config
        key = self._pool_key(venv, root)
        if key is not None and (slot := pool.take(key)) is not None:
            await self._adopt(slot, venv)
        else:
            self._jail = await self._new_jail(venv, root, venv.overlay)
        if key is not None:
            pool.ensure(key, config.warm_pool, functools.partial(self._pooled_worker, venv, root))
        self._workdir = self._jail.workdir  # type: ignore[union-attr]

    def _jail_env(self, venv: Venv, overlay: Path | None) -> dict[str, str]:
        env = dict(self._env)
        bins = (
            [str(venv.path / "bin")]
            if overlay is None
            else [str(overlay / "bin"), str(venv.path / "bin")]
        )
        env["PATH"] = os.pathsep.join([*bins, "/usr/local/bin:/usr/bin:/bin"])
        return env

    async def _new_jail(self, venv: Venv, root: Path, overlay: Path | None) -> WorkerJail:
        config = self.config
        env = self._jail_env(venv, overlay)
        shared = [venv.path, root]
        if overlay is not None:
            shared.append(overlay)  # read-only: only the host's uv writes there
        shared += [Path(env[k]) for k in ("SSL_CERT_FILE", "SSL_CERT_DIR", SOCKET_ENV) if k in env]
        return await open_worker_jail(
            python=venv.python,
            read_only=shared,
            workdir=config.working_dir,
            env=env,
            tmpfs_size=config.tmp_size_mb << 20,
            memory_bytes=config.memory_limit,
            max_pids=config.max_processes,
            opt_out='pass SubprocessConfig(isolation="none") (CLI/MCP: --isolation none)',
            network=config.network == "full",
        )

    # -- the warm pool -----------------------------------------------------------------
    def _pool_key(self, venv: Venv, root: Path) -> str | None:
        """The pool key of this session's workers, or None when they cannot be pooled."""
        config = self.config
        if (
            not config.warm_pool
            or not venv.shared
            or config.working_dir is not None
            or config.network == "allowlist"  # each session has its own proxy socket
        ):
            return None
        env = {k: v for k, v in self._env.items() if k != "PATH"}
        material = [
            str(venv.path),
            str(root),
            sorted(env.items()),
            config.tmp_size_mb,
            config.memory_limit,
            config.max_processes,
            config.network,
        ]
        return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:16]

    async def _pooled_worker(self, venv: Venv, root: Path) -> PooledWorker:
        """Start one worker, with its own scratch dir and jail, for the pool."""
        scratch = await asyncio.to_thread(make_scratch)
        overlay = scratch / "site-packages"
        try:
            await asyncio.to_thread(overlay.mkdir)
            jail = await self._new_jail(venv, root, overlay)
        except BaseException:  # also cancelled, when the loop ends while the pool fills
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            raise
        host_sock, child_sock = socket.socketpair()
        try:
            proc = popen_worker(
                venv.python,
                root,
                child_sock.fileno(),
                dict(jail.spec.env or {}),
                root,
                wrap=jail.wrap,
            )
        except OSError:
            host_sock.close()
            await jail.close()
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            raise
        finally:
            child_sock.close()
        slot = PooledWorker(proc, host_sock, scratch, jail)
        try:
            await _readable(host_sock, self.config.startup_timeout)  # its hello: booted
        except BaseException:
            await asyncio.to_thread(slot.discard)
            raise
        return slot

    async def _adopt(self, slot: PooledWorker, venv: Venv) -> None:
        """Make a pooled worker, its jail and its scratch dir this session's."""
        old = self._scratch
        self._scratch = slot.scratch
        venv.overlay = slot.scratch / "site-packages"
        self._env = self._jail_env(venv, venv.overlay)
        self._jail = slot.jail
        self._pooled = slot
        if old is not None:
            await asyncio.to_thread(shutil.rmtree, old, True)

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
        egress, self._egress = self._egress, None
        if egress is not None:
            await asyncio.to_thread(egress.close)
        pooled, self._pooled = self._pooled, None
        if pooled is not None:  # adopted but never configured (the start failed)
            await asyncio.to_thread(pooled.discard)
            self._jail = None
        jail, self._jail = self._jail, None
        if jail is not None:
            await jail.close()
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
        pooled, self._pooled = self._pooled, None
        if pooled is not None:
            proc, host_sock = pooled.proc, pooled.sock
        else:
            proc, host_sock = self._popen(venv)
        self._owned.proc = proc
        reader, writer = await asyncio.open_unix_connection(sock=host_sock)
        handle = WorkerProcess(
            proc,
            reader,
            writer,
            self._host,
            max_frame=self._max_frame,
            output_limit=config.output_limit,
        )
        handle.jailed = self._jail is not None
        self._baseline_tasks = 0
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
            self._baseline_tasks = (await asyncio.to_thread(process_tree, proc.pid))[1]
        except (TimeoutError, WorkerDiedError, ExecutorError) as exc:
            await handle.kill("failed to start")
            raise start_failure(
                exc, f"worker process ({venv.python})", config.startup_timeout, handle.stderr_tail
            ) from None
        return handle

    def _popen(self, venv: Venv) -> tuple[subprocess.Popen[bytes], socket.socket]:
        assert self._worker_root is not None
        assert self._workdir is not None
        host_sock, child_sock = socket.socketpair()
        try:
            proc = popen_worker(
                venv.python,
                self._worker_root,
                child_sock.fileno(),
                self._env if self._jail is None else dict(self._jail.spec.env or {}),
                self._workdir if self._jail is None else self._worker_root,
                wrap=None if self._jail is None else self._jail.wrap,
            )
        except OSError as exc:
            host_sock.close()
            raise ExecutorError(f"could not start the worker with {venv.python}: {exc}") from exc
        finally:
            child_sock.close()
        return proc, host_sock

    async def _run_locked(self, code: str, timeout: float | None) -> ExecutionResult:
        result = await super()._run_locked(code, timeout)
        if self._egress is not None:
            result = with_refusals(result, self._egress.take_refusals())
        if result.error_type == "TimeoutError" and not result.variables_lost:
            return await self._end_leftovers(result)
        return result

    async def _end_leftovers(self, result: ExecutionResult) -> ExecutionResult:
        """After an interrupted run: replace the worker if the run left threads or children.

        Interrupting stops the run's main thread only; threads and processes it started
        would run on unseen, so they end with the worker.
        """
        handle = self._handle
        if handle is None or not handle.check_alive():
            return result
        _pids, tasks = await asyncio.to_thread(process_tree, handle.pid)
        if tasks <= self._baseline_tasks:
            return result
        await handle.kill("was replaced after a timeout")
        handle.death_reported = True
        if self._jail is not None:
            await self._jail.kill_all()
        extra = tasks - self._baseline_tasks
        return replaced_after_timeout(
            result, f"the run left {extra} thread(s) or process(es) running", "worker"
        )

    async def _reset_locked(self) -> None:
        # Jailed, a reset is a fresh worker: no module state, thread or child survives.
        if self._jail is None:
            await super()._reset_locked()
            return
        old, self._handle = self._handle, None
        if old is not None:
            await old.kill("was replaced by a reset")
        await self._jail.kill_all()
        await self._restart()
