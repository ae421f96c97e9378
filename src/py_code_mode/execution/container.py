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
(``engine``; see :mod:`py_code_mode.execution._engines`), whose TLS or SSH attach
stream is relayed to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from py_code_mode._private.config import FieldCheck, parse_size
from py_code_mode.errors import ConfigError, DependencyError, ExecutorError
from py_code_mode.execution._container_connection import ContainerWorker, adopt
from py_code_mode.execution._container_launch import launch
from py_code_mode.execution._container_packages import ContainerPackages
from py_code_mode.execution._container_pool import pool
from py_code_mode.execution._container_reaper import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_POOL,
    LABEL_SESSION,
    reap_strays,
)
from py_code_mode.execution._container_spec import SITE_DIR, WORKDIR, Spec, build_spec
from py_code_mode.execution._engines import check_engines, ensure_live, prepare_every_engine
from py_code_mode.execution._engines import prepare as prepare_spec
from py_code_mode.execution._worker_client import WorkerDiedError, start_failure
from py_code_mode.execution._worker_runner import WorkerRunner

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices

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

DEFAULT_IMAGE = "py-code-mode-worker:latest"
"""The image built from ``docker/`` by ``py-code-mode image build``."""

_MAX_POOL = 32


# -- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerConfig:
    """Settings of the container executor.

    Attributes:
        image: Image to run; any image with ``python`` >= 3.11 works (the worker is
            copied in at start). The default is the image ``docker/`` builds.
        python: Interpreter inside the image.
        tools_path: Directory of tool YAML files (tools run on the host).
        deps: Requirement specs the session needs; missing ones are installed at
            start when the container has a network, else the start fails.
        deps_file: A requirements file read at construction (ignored when absent).
        allow_runtime_deps: Let agent code add and remove packages.
        timeout: Seconds a run may take when ``run`` gets no timeout; None for no
            limit. ``default_timeout`` is the same setting under the subprocess
            executor's name; give one of them.
        default_timeout: See ``timeout``.
        startup_timeout: Seconds a container may take to start and answer.
        install_timeout: Seconds one install inside the container may take.
        interrupt_grace: Seconds an interrupted run gets to stop before the container
            is removed and replaced.
        output_limit: Characters of output kept per run.
        memory_limit: Memory of the container (``"512m"``, ``"2g"``, or bytes);
            None for no limit. Swap is not added on top.
        cpu_limit: CPUs the container may use (``1.5``); None for no limit.
        pids_limit: Processes and threads in the container; None for no limit.
        network: ``"none"`` (no network, the default), ``"bridge"`` or the name of a
            Docker network. ``"host"`` is refused: it would expose the host's network.
        environment: Variables set in the container. A string value sets the
            variable; ``None`` copies it from the host when set there. Nothing else
            from the host environment enters the container.
        workdir_size: Size of the writable tmpfs work dir ``/work`` (also the home
            directory and where runtime deps go).
        user: ``uid:gid`` (or a user name of the image) the worker runs as.
        transport: ``"stdio"`` (the container's attached stdin/stdout; works without
            a network) or ``"tcp"`` (a port published on 127.0.0.1, authenticated with
            ``auth_token``; needs a network).
        auth_token: Shared secret every TCP connection must present (at least 16
            characters); ignored with the stdio transport.
        allow_unauthenticated: Allow ``transport="tcp"`` without ``auth_token``. Only
            for networks where every client is trusted.
        tcp_port: Port the worker listens on inside the container (TCP transport).
        warm_pool: Started containers to keep ready for new sessions with this
            configuration (process-wide); 0 disables the pool.
        ca_bundle: A PEM file copied into the container and used by installers and
            Python's ``ssl`` (``SSL_CERT_FILE``): for HTTPS behind an intercepting proxy.
        engine: Docker engine URL, or a list of them, instead of the environment's
            (``DOCKER_HOST``): ``tcp://host:2376`` (TLS, see ``engine_cert_path``),
            ``ssh://user@host`` or ``unix:///path``. With several, each session starts
            on the healthy engine running the fewest containers (see
            :mod:`py_code_mode.execution._engines`).
        engine_cert_path: Directory with ``ca.pem``, ``cert.pem`` and ``key.pem``
            (Docker's ``DOCKER_CERT_PATH`` layout) for ``tcp://`` engines.
        engine_retry: Seconds an engine that failed its health check is skipped.
    """

    image: str = DEFAULT_IMAGE
    python: str = "python3"
    tools_path: Path | None = None
    deps: tuple[str, ...] = ()
    deps_file: Path | None = None
    allow_runtime_deps: bool = True
    timeout: float | None = None
    default_timeout: float | None = None
    startup_timeout: float = 30.0
    install_timeout: float = 600.0
    interrupt_grace: float = 0.5
    output_limit: int = 1_000_000
    memory_limit: str | int | None = "1g"
    cpu_limit: float | None = 1.0
    pids_limit: int | None = 256
    network: str = "none"
    environment: Mapping[str, str | None] = field(default_factory=dict)
    workdir_size: str | int = "512m"
    user: str = "65534:65534"
    transport: Literal["stdio", "tcp"] = "stdio"
    auth_token: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False
    tcp_port: int = 8777
    warm_pool: int = 0
    ca_bundle: Path | None = None
    engine: str | tuple[str, ...] | None = None
    engine_cert_path: Path | None = None
    engine_retry: float = 30.0
    _validated_deps: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        check = FieldCheck(self)
        owner = check.owner
        check.common()
        check.paths("ca_bundle")
        for name in ("image", "python", "user", "network"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise ConfigError(f"{owner}.{name} must be a non-empty string, got {value!r}")
        if self.network == "host" or self.network.startswith("container:"):
            raise ConfigError(
                f"{owner}.network={self.network!r} would share another network stack and "
                "defeat the sandbox; use 'none' (the default), 'bridge' or a Docker network name"
            )
        check.flags("allow_unauthenticated")
        check.numbers("timeout", "cpu_limit", allow_none=True)
        if (
            self.timeout is not None
            and self.default_timeout is not None
            and self.timeout != self.default_timeout
        ):
            raise ConfigError(
                f"{owner}: timeout and default_timeout are the same setting; give only one"
            )
        check.numbers("startup_timeout", "install_timeout")
        check.integers("output_limit", "tcp_port")
        check.integers("pids_limit", minimum=8, allow_none=True)
        if self.tcp_port > 65535:
            raise ConfigError(f"{owner}.tcp_port must be at most 65535, got {self.tcp_port}")
        pool_size = self.warm_pool
        if (
            isinstance(pool_size, bool)
            or not isinstance(pool_size, int)
            or not 0 <= pool_size <= _MAX_POOL
        ):
            raise ConfigError(f"{owner}.warm_pool must be an integer from 0 to {_MAX_POOL}")
        if self.memory_limit is not None:
            parse_size(owner, "memory_limit", self.memory_limit, minimum=64 << 20)
        parse_size(owner, "workdir_size", self.workdir_size, minimum=16 << 20)
        if self.transport not in ("stdio", "tcp"):
            raise ConfigError(f"{owner}.transport must be 'stdio' or 'tcp', got {self.transport!r}")
        self._check_auth(owner)
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError(f"{owner}.ca_bundle {self.ca_bundle} is not a file")
        check.env("environment")
        check.deps()
        check_engines(self)

    def _check_auth(self, owner: str) -> None:
        token = self.auth_token
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigError(
                f"{owner}.auth_token must be a string of at least 16 characters; make one "
                "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.transport != "tcp":
            return
        if token is None and not self.allow_unauthenticated:
            raise ConfigError(
                f"{owner}: transport='tcp' needs an auth_token so that only this host can "
                "drive the worker; set allow_unauthenticated=True only on a trusted network"
            )
        if self.network == "none":
            raise ConfigError(
                f"{owner}: transport='tcp' needs a network; set network='bridge' (or a Docker "
                "network name), or use transport='stdio', which works without one"
            )

    @property
    def run_timeout(self) -> float | None:
        """The default run timeout (``timeout`` or ``default_timeout``)."""
        return self.timeout if self.timeout is not None else self.default_timeout


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


# -- the executor -------------------------------------------------------------------------------
class ContainerExecutor(WorkerRunner[ContainerConfig, ContainerWorker]):
    """Runs agent code in a hardened Docker container with its own Python.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: ContainerConfig | None = None) -> None:
        super().__init__(config, ContainerConfig)
        self._spec: Spec | None = None
        self._packages = ContainerPackages(self.config)

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
    def _default_timeout(self) -> float | None:
        return self.config.run_timeout

    async def _prepare(self, host: HostServices) -> None:
        """Reach the engine, clean up strays once and check the image."""
        self._spec = await asyncio.to_thread(prepare_spec, self.config)

    async def _after_spawn(self, host: HostServices) -> None:
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
