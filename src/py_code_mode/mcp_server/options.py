"""Command-line options of the MCP server and how they become a :class:`Session`.

The flags are parsed with :mod:`argparse` rather than typer so that
``py-code-mode-mcp`` starts without importing a CLI framework; ``py-code-mode mcp``
forwards its arguments here, so both entry points share one definition.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from py_code_mode.errors import ConfigError
from py_code_mode.mcp_server.tenants import (
    DEFAULT_LIMITS,
    TOKEN_ENV,
    TOKENS_FILE_ENV,
    Tenancy,
    Tenant,
    TenantLimits,
    is_loopback,
)
from py_code_mode.session import _EXECUTOR_FACTORIES, ExecutorKind, Session, _make_executor

if TYPE_CHECKING:
    from py_code_mode.approval import Approver
    from py_code_mode.execution.protocol import Executor
    from py_code_mode.quotas import Quotas
    from py_code_mode.storage.protocol import StorageBackend

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "EXECUTOR_KINDS",
    "IMAGE_ENV",
    "LogLevel",
    "ServerOptions",
    "build_parser",
    "default_base",
    "default_executor",
    "parse_args",
]

DEFAULT_PORT = 8765
DEFAULT_PREFIX = "py-code-mode"
DEFAULT_TIMEOUT = 60.0
EXECUTOR_KINDS: tuple[ExecutorKind, ...] = get_args(ExecutorKind)
BASE_ENV = "PY_CODE_MODE_BASE"
IMAGE_ENV = "PY_CODE_MODE_IMAGE"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def _executor_module(kind: str) -> str | None:
    factory = _EXECUTOR_FACTORIES.get(kind)
    return None if factory is None else factory[0]


def default_base() -> Path:
    """``$PY_CODE_MODE_BASE`` when set, else ``~/.code-mode``."""
    return Path(os.environ.get(BASE_ENV) or "~/.code-mode").expanduser()


def executor_available(kind: str) -> bool:
    """Whether the module of an executor kind is part of this installation."""
    module = _executor_module(kind)
    return module is not None and importlib.util.find_spec(module) is not None


def default_executor() -> ExecutorKind:
    """``"subprocess"`` (process isolation) when it is installed, else ``"in-process"``.

    The subprocess executor is the product default; an installation without it
    falls back to running code in the server process, which the server logs.
    """
    return "subprocess" if executor_available("subprocess") else "in-process"


@dataclass(frozen=True)
class ServerOptions:
    """Everything needed to build sessions and serve them.

    Attributes:
        base: Directory holding the library (storage, ``tools/``, ``requirements.txt``).
        storage: FileStorage directory when it differs from ``base``.
        tools: Tool YAML directory when it differs from ``base/tools``.
        redis: Redis URL; when given, workflows, artifacts and deps live in Redis.
        prefix: Key prefix in Redis.
        executor: Where code runs; ``None`` for :func:`default_executor`.
        timeout: Default seconds per ``run_code`` call; ``None`` for no limit.
        allow_runtime_deps: Whether agents may install and remove packages.
        isolation: The subprocess executor's jail, ``"bwrap"`` or ``"none"`` (explicit
            opt-out); ``None`` for its default (bubblewrap on Linux).
        runtime: The container executor's OCI runtime (``"runsc"`` for gVisor);
            ``None`` for the engine's default.
        allow_hosts: Hosts the sandbox may reach through the egress proxy
            (``network="allowlist"``); empty for the executor's default (no network).
        transport: ``"stdio"`` or ``"http"`` (streamable HTTP).
        host: Interface for HTTP.
        port: Port for HTTP.
        log_level: Level of the server's stderr log.
        tokens: TOML file of bearer tokens, one tenant each (HTTP).
        no_auth: Serve HTTP without authentication (loopback hosts only).
        limits: Per-tenant limits (defaults of a token file; the only tenant's
            otherwise).
        engines: Docker engine URLs for the container executor (empty: ``DOCKER_HOST``).
        engine_certs: TLS client certificate directory for ``tcp://`` engines.
        image: Image of the container executor (``--image`` or ``$PY_CODE_MODE_IMAGE``);
            ``None`` for the one ``py-code-mode image build`` makes.
        quotas: ``NAME=VALUE`` quota settings (``--quota``) over the defaults.
        confirm: Patterns of tool calls that need the client's approval (``--confirm``).
    """

    base: Path
    storage: Path | None = None
    tools: Path | None = None
    redis: str | None = None
    prefix: str = DEFAULT_PREFIX
    executor: ExecutorKind | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    allow_runtime_deps: bool = True
    isolation: str | None = None
    runtime: str | None = None
    allow_hosts: tuple[str, ...] = ()
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    log_level: LogLevel = "WARNING"
    tokens: Path | None = None
    no_auth: bool = False
    limits: TenantLimits = DEFAULT_LIMITS
    engines: tuple[str, ...] = ()
    engine_certs: Path | None = None
    image: str | None = None
    quotas: tuple[str, ...] = ()
    confirm: tuple[str, ...] = ()

    @property
    def executor_kind(self) -> ExecutorKind:
        """The executor that will be used."""
        return self.executor or default_executor()

    @property
    def storage_path(self) -> Path:
        """Directory of the FileStorage (ignored with Redis)."""
        return (self.storage or self.base).expanduser()

    @property
    def tools_path(self) -> Path | None:
        """The tools directory, or ``None`` when there is none to load."""
        if self.tools is not None:
            return self.tools.expanduser()
        default = self.base.expanduser() / "tools"
        return default if default.is_dir() else None

    def check(self) -> None:
        """Validate what can be checked without starting anything; create the base dir.

        Raises:
            ConfigError: A value is unusable; the message names the flag.
        """
        kind = self.executor_kind
        if kind not in EXECUTOR_KINDS:
            raise ConfigError(
                f"--executor {kind!r} is unknown; choose one of {', '.join(EXECUTOR_KINDS)}"
            )
        if not executor_available(kind):
            raise ConfigError(
                f"--executor {kind} is not available in this installation "
                f"({_executor_module(kind)} is missing); use --executor in-process"
            )
        if self.allow_hosts and kind == "in-process":
            raise ConfigError(
                "--allow-host needs a sandbox: --executor subprocess (jailed) or container"
            )
        if self.isolation not in (None, "bwrap", "none"):
            raise ConfigError(f"--isolation must be bwrap or none, got {self.isolation!r}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ConfigError(f"--timeout must be a positive number of seconds, got {self.timeout}")
        self.make_quotas()
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, got {self.port}")
        self.limits.check("limits")
        if (self.engines or self.engine_certs) and kind != "container":
            raise ConfigError("--engine and --engine-certs need --executor container")
        if kind == "container" and self.engines:
            self.make_executor()  # validates the engine URLs and certificates
        if self.transport == "http":
            self.tenancy()
        elif self.tokens is not None or self.no_auth:
            raise ConfigError("--tokens and --no-auth apply to --transport http only")
        if self.tools is not None and not self.tools.expanduser().is_dir():
            raise ConfigError(f"--tools {self.tools}: no such directory")
        for flag, path in (("--base", self.base), ("--storage", self.storage)):
            if path is None:
                continue
            try:
                path.expanduser().mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"{flag} {path}: cannot create the directory: {exc}") from exc
        if self.redis is not None:
            if not self.redis.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(
                    f"--redis must be a URL such as redis://localhost:6379/0, got {self.redis!r}"
                )
            # Builds nothing that connects; it fails fast on a missing extra or bad prefix.
            self.make_storage()

    def make_storage(self) -> StorageBackend:
        """A new storage backend instance (each session owns and closes its own).

        Raises:
            ConfigError: Redis was asked for but RedisStorage cannot be loaded.
        """
        if self.redis is None:
            from py_code_mode.storage.file import FileStorage

            return FileStorage(self.storage_path)
        try:
            from py_code_mode import RedisStorage
        except ImportError as exc:
            raise ConfigError(
                "--redis needs RedisStorage, which cannot be loaded in this installation "
                f"({exc}); install the extra with: pip install 'py-code-mode[redis]'"
            ) from exc
        storage: StorageBackend = RedisStorage(url=self.redis, prefix=self.prefix)
        return storage

    def make_executor(self) -> Executor:
        """A new executor of the configured kind (one per session).

        Raises:
            ConfigError: The executor or its config rejected the settings.
        """
        settings: dict[str, Any] = {
            "tools_path": self.tools_path,
            "allow_runtime_deps": self.allow_runtime_deps,
        }
        if self.isolation is not None and self.executor_kind == "subprocess":
            settings["isolation"] = self.isolation
        if self.runtime is not None and self.executor_kind == "container":
            settings["runtime"] = self.runtime
        if self.allow_hosts:
            settings["network"] = "allowlist"
            settings["allow"] = self.allow_hosts
        if self.engines:
            settings["engine"] = self.engines
        if self.engine_certs is not None:
            settings["engine_cert_path"] = self.engine_certs.expanduser()
        if self.image and self.executor_kind == "container":
            settings["image"] = self.image
        return _make_executor(self.executor_kind, settings)

    def make_quotas(self) -> Quotas:
        """The quotas of the ``--quota`` flags over the defaults.

        Raises:
            ConfigError: A flag is not ``NAME=VALUE`` with a known name and a positive size.
        """
        from py_code_mode.quotas import Quotas

        return Quotas.from_assignments(self.quotas)

    def make_session(self, approve: Approver | None = None) -> Session:
        """A new, not yet started session on the shared storage location.

        Args:
            approve: Asked before tool calls marked ``confirm`` (the server's asks
                its MCP client); without it such calls are refused.
        """
        return Session(
            storage=self.make_storage(),
            executor=self.make_executor(),
            quotas=self.make_quotas(),
            approve=approve,
            confirm=self.confirm,
        )

    def make_tenant_session(self, tenant: Tenant, approve: Approver | None = None) -> Session:
        """A new, not yet started session on ``tenant``'s own storage location."""
        if tenant.storage_key is None:
            return self.make_session(approve)
        if self.redis is None:
            from py_code_mode.storage.file import FileStorage

            storage: StorageBackend = FileStorage(tenant.storage_dir(self.storage_path))
        else:
            from py_code_mode import RedisStorage

            storage = RedisStorage(url=self.redis, prefix=tenant.redis_prefix(self.prefix))
        return Session(
            storage=storage,
            executor=self.make_executor(),
            quotas=self.make_quotas(),
            approve=approve,
            confirm=self.confirm,
        )

    def tenancy(self) -> Tenancy | None:
        """The tenants of an HTTP server, or ``None`` when it runs without auth.

        Raises:
            ConfigError: HTTP has neither tokens nor ``--no-auth``, ``--no-auth`` is
                asked for on a host other machines can reach, or the tokens are bad.
        """
        if self.no_auth:
            if self.tokens is not None:
                raise ConfigError("--no-auth and --tokens exclude each other; choose one")
            if not is_loopback(self.host):
                raise ConfigError(
                    f"--no-auth is allowed on a loopback host only, not --host {self.host}: "
                    f"anyone who can reach it could run code; give --tokens FILE or ${TOKEN_ENV}"
                )
            return None
        if self.tokens is not None:
            return Tenancy.from_file(self.tokens.expanduser(), self.limits)
        token = os.environ.get(TOKEN_ENV)
        if token:
            return Tenancy.single(token, self.limits)
        raise ConfigError(
            "--transport http needs authentication: give --tokens FILE (one bearer token per "
            f"tenant) or set ${TOKEN_ENV}, or pass --no-auth to serve a loopback host without it"
        )

    def auth_mode(self) -> str:
        """One line saying how HTTP callers are authenticated (for logs and doctor)."""
        if self.transport != "http":
            return "stdio: the client that started the server"
        if self.no_auth:
            return f"no authentication (--no-auth, loopback {self.host} only)"
        if self.tokens is not None:
            return f"bearer tokens from {self.tokens}, one storage location per tenant"
        return f"one bearer token from ${TOKEN_ENV}, the server's storage"


def build_parser(prog: str = "py-code-mode-mcp") -> argparse.ArgumentParser:
    """The argument parser shared by ``py-code-mode-mcp`` and ``py-code-mode mcp``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Serve a persistent Python environment to MCP clients. Agent code runs with "
            "four namespaces (tools, workflows, artifacts, deps); the library of workflows, "
            "artifacts and deps lives in --base (or Redis) and is shared by all clients."
        ),
        epilog=(
            "Example: claude mcp add py-code-mode -- uvx --from py-code-mode "
            "py-code-mode-mcp --base ~/.code-mode"
        ),
    )
    where = parser.add_argument_group("library")
    where.add_argument(
        "--base",
        type=Path,
        default=None,
        help=f"directory of the library: storage, tools/ and requirements.txt; created when "
        f"missing (default: ${BASE_ENV} or ~/.code-mode)",
    )
    where.add_argument(
        "--storage", type=Path, default=None, help="store workflows and artifacts here instead"
    )
    where.add_argument(
        "--tools", type=Path, default=None, help="tool YAML directory (default: BASE/tools)"
    )
    where.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="keep workflows, artifacts and deps in Redis, e.g. redis://localhost:6379/0",
    )
    where.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"Redis key prefix (default: {DEFAULT_PREFIX})"
    )
    run = parser.add_argument_group("execution")
    run.add_argument(
        "--executor",
        choices=EXECUTOR_KINDS,
        default=None,
        help="where code runs (default: subprocess when installed, else in-process)",
    )
    run.add_argument(
        "--image",
        default=None,
        help=f"image of --executor container (default: ${IMAGE_ENV}, else the one "
        "`py-code-mode image build` makes)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"default seconds per run_code call, 0 for no limit (default: {DEFAULT_TIMEOUT:g})",
    )
    run.add_argument(
        "--no-runtime-deps",
        action="store_true",
        help="do not let agents install or remove packages (hides add_dep and remove_dep)",
    )
    run.add_argument(
        "--isolation",
        choices=("bwrap", "none"),
        default=None,
        help="subprocess executor: run workers in a bubblewrap jail (default on Linux) or "
        "'none' to opt out explicitly (agent code then has your user's access)",
    )
    run.add_argument(
        "--runtime",
        default=None,
        metavar="NAME",
        help="container executor: the engine's OCI runtime, e.g. runsc for gVisor",
    )
    run.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST",
        help="sandbox egress, repeatable: reach HOST (pypi.org, *.example.com) through the "
        "host's allowlist proxy; without it the sandbox has no network",
    )
    run.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="URL",
        help="Docker engine of the container executor, repeatable: tcp://host:2376 (TLS), "
        "ssh://user@host, unix:///path; sessions go to the least loaded healthy one "
        "(default: DOCKER_HOST)",
    )
    run.add_argument(
        "--engine-certs",
        type=Path,
        default=None,
        metavar="DIR",
        help="ca.pem, cert.pem and key.pem for tcp:// engines (Docker's DOCKER_CERT_PATH layout)",
    )
    run.add_argument(
        "--quota",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a quota, repeatable; sizes may end in K, M or G, e.g. "
        "--quota max_artifact_bytes=50M --quota max_artifacts=1000 (names: "
        "max_code_bytes, max_artifact_bytes, max_total_artifact_bytes, max_artifacts, "
        "max_workflows, max_workflow_source_bytes, max_description_bytes, max_query_chars)",
    )
    run.add_argument(
        "--confirm",
        metavar="PATTERN",
        action="append",
        default=[],
        help="ask the client before tool calls matching PATTERN (repeatable; fnmatch on "
        "'tool' or 'tool.callable', e.g. --confirm 'git' --confirm 'curl.*'), besides "
        "tools and recipes marked confirm: true in their YAML",
    )
    serve = parser.add_argument_group("transport")
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP interface (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default: {DEFAULT_PORT})"
    )
    access = parser.add_argument_group("access (HTTP)")
    access.add_argument(
        "--tokens",
        type=Path,
        default=os.environ.get(TOKENS_FILE_ENV) or None,
        metavar="FILE",
        help=f"TOML file of bearer tokens, one tenant (own storage, own limits) each "
        f"(default: ${TOKENS_FILE_ENV}); without it ${TOKEN_ENV} gives one token",
    )
    access.add_argument(
        "--no-auth",
        action="store_true",
        help="serve HTTP without authentication (allowed on a loopback --host only)",
    )
    access.add_argument(
        "--max-sessions",
        type=int,
        default=TenantLimits.max_sessions,
        help="execution sessions per tenant at once (default: %(default)s)",
    )
    access.add_argument(
        "--idle-timeout",
        type=float,
        default=TenantLimits.idle_timeout,
        help="seconds without a call before a session's worker is stopped, 0 for never "
        "(default: %(default)s)",
    )
    access.add_argument(
        "--max-runs",
        type=int,
        default=TenantLimits.max_runs,
        help="run_code calls in flight per tenant (default: %(default)s)",
    )
    serve.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        type=str.upper,
        default="WARNING",
        help="stderr log level (default: WARNING)",
    )
    return parser


def parse_args(argv: Sequence[str] | None = None, prog: str = "py-code-mode-mcp") -> ServerOptions:
    """Parse server flags; exits with a usage message on bad syntax (argparse)."""
    ns = build_parser(prog).parse_args(argv)
    return ServerOptions(
        base=(ns.base or default_base()).expanduser(),
        storage=ns.storage,
        tools=ns.tools,
        redis=ns.redis,
        prefix=ns.prefix,
        executor=ns.executor,
        timeout=None if ns.timeout == 0 else ns.timeout,
        allow_runtime_deps=not ns.no_runtime_deps,
        isolation=ns.isolation,
        runtime=ns.runtime,
        allow_hosts=tuple(ns.allow_host),
        transport=ns.transport,
        host=ns.host,
        port=ns.port,
        log_level=cast("LogLevel", ns.log_level),
        tokens=ns.tokens,
        engines=tuple(ns.engine),
        engine_certs=ns.engine_certs,
        no_auth=ns.no_auth,
        limits=TenantLimits(
            max_sessions=ns.max_sessions,
            idle_timeout=None if ns.idle_timeout == 0 else ns.idle_timeout,
            max_runs=ns.max_runs,
        ),
        image=ns.image or os.environ.get(IMAGE_ENV) or None,
        quotas=tuple(ns.quota),
        confirm=tuple(ns.confirm),
    )
