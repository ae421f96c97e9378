"""Container executor: agent code runs in a hardened Docker container, one per session.

The container runs the same worker (:mod:`py_code_mode.worker`) and speaks the same
framed JSON protocol as the subprocess executor; only the way the worker is started
and reached differs:

* **Any image with ``python3`` >= 3.11.** The worker is not baked into the image: the
  container starts a tiny loader (``python3 -c ...``) that reads the worker's source
  files from its stdin, writes them into the size-limited tmpfs work dir and starts
  the worker. The root filesystem stays read-only.
* **Transport.** By default the host attaches to the container's stdin/stdout and
  the protocol flows over them (Docker's stream framing is removed on the host), so
  it works with the network off. ``transport="tcp"`` serves the worker on a port
  published on the host's loopback interface, and every connection must present
  ``auth_token`` (see :mod:`py_code_mode.worker.listen`).
* **Hardened defaults.** No network, read-only root filesystem, tmpfs ``/work`` and
  ``/tmp`` with size limits, user ``65534:65534`` (nobody), all capabilities dropped,
  ``no-new-privileges``, pids/memory/CPU limits, an init process reaping zombies, no
  host mounts and no host environment variables. Tools, storage, search and their
  credentials stay on the host and are reached by RPC over the protocol.
* **Faults.** A run past its timeout is interrupted; if it does not stop, the
  container is removed and the next run gets a new one. A worker that dies (the
  kernel's OOM killer at the memory limit, ``os._exit``) yields an error result.
* **Cleanup.** Containers are removed when the session closes. They are labelled
  with the owning process (pid, its start time, hostname): when the host process
  dies, the attached stdin closes and the worker ends its container (Docker removes
  it); containers left by a process that died anyway are removed by the next
  executor start on the same machine (see :func:`reap_stray_containers`).
* **Warm pool.** With ``warm_pool=N``, N started containers per configuration wait in
  a process-wide pool (their workers already said hello), so a session start (or a
  restart after a timeout) takes a ready container instead of creating one. Fill it
  ahead with :meth:`ContainerExecutor.prewarm`; :func:`drain_warm_pool` empties it.

Runtime deps: with a network, ``deps.add`` installs inside the container (``uv`` when
the image has it, else pip) into a directory of the work dir that the worker imports
from. With ``network="none"`` (the default) it fails with a :class:`DependencyError`
that says how to bake packages into the image or allow a network.

Requires the ``docker`` SDK (``pip install 'py-code-mode[container]'``) and a Docker
engine: the environment's (``DOCKER_HOST`` or the local socket), or remote ones by URL
(``engine``; see :mod:`py_code_mode.execution.container.engines`), whose TLS or SSH attach
stream is relayed to the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from py_code_mode.errors import ConfigError, DependencyError, ExecutorError
from py_code_mode.execution._egress import SandboxEgress, with_refusals
from py_code_mode.execution._isolated.client import (
    WorkerDiedError,
    replaced_after_timeout,
    start_failure,
)
from py_code_mode.execution._isolated.runner import WorkerRunner
from py_code_mode.execution.container.config import DEFAULT_IMAGE, ContainerConfig
from py_code_mode.execution.container.connection import ContainerWorker, adopt
from py_code_mode.execution.container.engine import api, docker_errors, remove_in_background
from py_code_mode.execution.container.engines import ensure_live, prepare_every_engine
from py_code_mode.execution.container.engines import prepare as prepare_spec
from py_code_mode.execution.container.launch import launch
from py_code_mode.execution.container.packages import ContainerPackages
from py_code_mode.execution.container.pool import pool
from py_code_mode.execution.container.reaper import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_POOL,
    LABEL_SESSION,
    reap_strays,
)
from py_code_mode.execution.container.spec import (
    SITE_DIR,
    WORKDIR,
    Spec,
    build_spec,
    with_egress,
)
from py_code_mode.result import ExecutionResult

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = [
    "DEFAULT_IMAGE",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_START",
    "LABEL_POOL",
    "LABEL_SESSION",
    "ContainerConfig",
    "ContainerExecutor",
    "drain_warm_pool",
    "reap_stray_containers",
]

logger = logging.getLogger(__name__)


# -- process-wide housekeeping ---------------------------------------------------------------
async def reap_stray_containers() -> int:
    """Remove py-code-mode containers whose owning process on this machine is gone.

    Runs automatically once per process at the first executor start; returns how
    many containers were removed.

    Raises:
        ExecutorError: No Docker engine is reachable.
    """
    return await asyncio.to_thread(reap_strays)


async def drain_warm_pool(config: ContainerConfig | None = None) -> int:
    """Remove the pooled containers of ``config`` (all of them when None).

    Returns how many were removed. Pools are also emptied when the process exits.
    """
    key = None if config is None else (await asyncio.to_thread(build_spec, config)).key
    return await asyncio.to_thread(pool.drain, key)


def _local_engine() -> bool:
    """Whether the environment's engine (``DOCKER_HOST``) is on this machine."""
    return os.environ.get("DOCKER_HOST", "unix://").startswith(("unix://", "npipe://"))


@dataclass(slots=True)
class _Held:
    """What a session holds outside this process, freed if it is dropped without close().

    Refers to nothing that refers back to the executor, so a :func:`weakref.finalize`
    can hold it without keeping the executor alive.
    """

    container_id: str | None = None
    egress: SandboxEgress | None = None

    def release(self) -> None:
        container_id, self.container_id = self.container_id, None
        egress, self.egress = self.egress, None
        if container_id is None and egress is None:
            return
        logger.warning("a container session was dropped without close(); freeing it")
        if container_id is not None:
            remove_in_background(container_id)
        if egress is not None:
            egress.close()


# -- the executor -------------------------------------------------------------------------------
class ContainerExecutor(WorkerRunner[ContainerConfig, ContainerWorker]):
    """Runs agent code in a hardened Docker container with its own Python.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: ContainerConfig | None = None) -> None:
        super().__init__(config, ContainerConfig)
        self._spec: Spec | None = None
        self._baseline_tasks: int | None = None
        self._packages = ContainerPackages(self.config)
        self._egress: SandboxEgress | None = None
        self._held = _Held()
        weakref.finalize(self, self._held.release)

    @property
    def container_id(self) -> str | None:
        """Id of the live container, if any (for diagnostics and tests)."""
        handle = self._handle
        return None if handle is None or handle.dead.is_set() else handle.container_id

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """Where the live worker listens on this host (TCP transport only)."""
        handle = self._handle
        if handle is None or handle.launched.host_port is None:
            return None
        return ("127.0.0.1", handle.launched.host_port)

    # -- warm pool -----------------------------------------------------------------------
    @classmethod
    async def prewarm(cls, config: ContainerConfig, count: int | None = None) -> list[str]:
        """Fill the warm pool of ``config`` and wait until it holds ``count`` containers.

        ``count`` defaults to ``config.warm_pool`` (at least 1). Returns the ids of the
        containers waiting in the pool. With several engines, every healthy engine
        gets a pool of ``count``.

        Raises:
            ConfigError, ExecutorError: The engine or image is not usable.
        """
        target = count if count is not None else max(config.warm_pool, 1)
        specs = await asyncio.to_thread(prepare_every_engine, config)
        for spec in specs:
            pool.ensure(spec, target)
        deadline = time.monotonic() + config.startup_timeout * max(target, 1)
        while any(pool.count(spec.key) < target for spec in specs):
            failure = next((pool.failure(s.key) for s in specs if pool.failure(s.key)), "")
            if failure:
                raise ExecutorError(f"could not fill the warm pool: {failure}")
            if time.monotonic() > deadline:
                raise ExecutorError(
                    f"the warm pool did not reach {target} container(s) within "
                    f"{config.startup_timeout * target:g} s"
                )
            await asyncio.sleep(0.02)
        return [cid for spec in specs for cid in pool.ids(spec.key)]

    # -- PackageEnvironment --------------------------------------------------------------
    async def install(self, specs: Sequence[str]) -> str:
        """Install packages inside the container, where the running worker imports them.

        Raises:
            DependencyError: The container has no network, or the installer failed.
        """
        handle = self._require_handle()
        async with self._install_lock:
            return await self._packages.install(handle.container_id, specs)

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall packages installed at run time; packages of the image stay."""
        handle = self._require_handle()
        async with self._install_lock:
            return await self._packages.uninstall(handle.container_id, names)

    # -- lifecycle hooks -------------------------------------------------------------------
    async def _prepare(self, host: Host) -> None:
        """Reach the engine, clean up strays once and check the image."""
        self._spec = await asyncio.to_thread(prepare_spec, self.config)
        config = self.config
        if config.network == "allowlist":
            if self._spec.engine is not None or not _local_engine():
                raise ConfigError(
                    "network='allowlist' binds a unix socket of this machine into the "
                    "container, which a remote engine (DOCKER_HOST) cannot mount; use the "
                    "local engine or network='none'"
                )
            self._egress = SandboxEgress.of(config)
            self._held.egress = self._egress
            await asyncio.to_thread(self._egress.start)
            self._spec = with_egress(self._spec, str(self._egress.socket_path))

    async def _cleanup(self) -> None:
        await super()._cleanup()
        self._held.container_id = self._held.egress = None  # stopped by close() already
        egress, self._egress = self._egress, None
        if egress is not None:
            await asyncio.to_thread(egress.close)

    async def _after_spawn(self, host: Host) -> None:
        """Make sure the configured and stored deps are there (installing if allowed)."""
        wanted = [*self.configured_deps, *await host.storage.list_deps()]
        await self._ensure_deps(list(dict.fromkeys(wanted)), strict=True)

    async def _restart(self) -> ContainerWorker:
        """A fresh container, given the packages the old one had installed at run time."""
        handle = await super()._restart()
        wanted = [*self.configured_deps, *self._packages.runtime_specs]
        try:
            await self._ensure_deps(list(dict.fromkeys(wanted)), strict=False)
        except DependencyError as exc:
            logger.warning("the replacement container lacks packages: %s", exc)
        return handle

    async def _run_locked(self, code: str, timeout: float | None) -> ExecutionResult:
        result = await super()._run_locked(code, timeout)
        if self._egress is not None:
            result = with_refusals(result, self._egress.take_refusals())
        if result.error_type == "TimeoutError" and not result.variables_lost:
            return await self._end_leftovers(result)
        return result

    async def _end_leftovers(self, result: ExecutionResult) -> ExecutionResult:
        """After an interrupted run: replace the container if the run left tasks running.

        Interrupting stops the run's main thread only; threads and processes it started
        would run on unseen. Under runc the container's pids cgroup counts both: more than
        after the worker started means something of the run is still there. Under gVisor
        (or when the engine cannot tell) that count says nothing about the sandbox's own
        threads, so the container is always replaced.
        """
        handle = self._handle
        if handle is None or not handle.check_alive():
            return result
        baseline = self._baseline_tasks
        tasks = None
        if baseline is not None and self.config.runtime != "runsc":
            tasks = await asyncio.to_thread(_task_count, handle.container_id)
        if tasks is not None and baseline is not None and tasks <= baseline:
            return result
        await handle.kill("was replaced after a timeout")
        handle.death_reported = True
        if tasks is None or baseline is None:
            why = "whether the run left threads or processes running cannot be seen here"
        else:
            why = f"the run left {tasks - baseline} thread(s) or process(es) running"
        return replaced_after_timeout(result, why, "container")

    async def _reset_locked(self) -> None:
        # A reset is a fresh container (from the warm pool when there is one): no
        # poisoned module, thread or process of the old one survives.
        await self._restart()

    # -- internals -------------------------------------------------------------------------
    def _require_handle(self) -> ContainerWorker:
        handle = self._handle
        if handle is None or handle.dead.is_set():
            raise DependencyError("the container is not running; start the session first")
        return handle

    async def _spawn(self) -> ContainerWorker:
        assert self._spec is not None
        assert self._host is not None
        config = self.config
        if self._spec.engine is not None:
            # A restart after the engine died moves the session to another engine.
            self._spec = await asyncio.to_thread(ensure_live, config, self._spec)
        spec = self._spec
        launched = await asyncio.to_thread(pool.take, spec) if config.warm_pool else None
        if config.warm_pool:
            pool.ensure(spec, config.warm_pool)
        handle: ContainerWorker | None = None
        try:
            async with asyncio.timeout(config.startup_timeout):
                if launched is None:
                    launched = await asyncio.to_thread(launch, spec, config.startup_timeout)
                handle, hello = await adopt(
                    launched,
                    self._host,
                    token=spec.token,
                    memory_limit=config.memory_limit,
                    max_frame=self._max_frame,
                    output_limit=config.output_limit,
                )
                self._held.container_id = launched.container_id
                await handle.configure(
                    hello=hello, limits={}, site_dirs=[SITE_DIR], sys_path=[WORKDIR]
                )
        except (TimeoutError, WorkerDiedError, ExecutorError, OSError) as exc:
            detail = ""
            if handle is not None:
                await handle.kill("failed to start")
                detail = handle.stderr_tail
            elif launched is not None:
                await asyncio.to_thread(launched.discard)
            raise start_failure(
                exc, f"worker container ({config.image})", config.startup_timeout, detail
            ) from None
        if config.runtime != "runsc":
            self._baseline_tasks = await asyncio.to_thread(_task_count, handle.container_id)
        return handle

    async def _ensure_deps(self, wanted: list[str], *, strict: bool) -> None:
        if not wanted:
            return
        handle = self._require_handle()
        missing = await self._packages.missing(handle.container_id, wanted)
        if not missing:
            return
        if self.config.network == "none" and strict:
            raise DependencyError(
                f"the image {self.config.image!r} lacks {', '.join(missing)} and the container "
                "has no network to install them (ContainerConfig.network='none'). Bake them "
                "into the image (`py-code-mode image build --dep NAME`), or set "
                "network='bridge' to install at start."
            )
        logger.info("installing %d missing package(s) in the container", len(missing))
        await self.install(missing)


_PIDS_CGROUPS = (
    "/sys/fs/cgroup/pids/docker/{id}/pids.current",  # cgroup v1, cgroupfs driver
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/pids.current",  # v2, systemd driver
    "/sys/fs/cgroup/docker/{id}/pids.current",  # v2, cgroupfs driver
)


def _task_count(container_id: str) -> int | None:
    """Processes and threads in a container (its pids cgroup), or None if unknown.

    Read from the local cgroup when the engine runs here (microseconds), else asked
    of the engine (about a second: it samples twice).
    """
    for template in _PIDS_CGROUPS:
        with contextlib.suppress(OSError, ValueError):
            return int(Path(template.format(id=container_id)).read_text())

    try:
        stats = api().stats(container_id, stream=False, one_shot=True)
    except (docker_errors().DockerException, OSError, ExecutorError):
        return None
    current = (stats.get("pids_stats") or {}).get("current")
    return current if isinstance(current, int) else None
