"""Settings of the container executor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from py_code_mode.execution._configured import (
    EnvSetting,
    ExecutorConfig,
    Flag,
    MemoryLimit,
    OptionalPath,
    Seconds,
    SizeInput,
    at_least_mib,
)
from py_code_mode.execution._egress import check_egress_settings
from py_code_mode.execution.container.engines import check_engines

__all__ = ["DEFAULT_IMAGE", "ContainerConfig"]

DEFAULT_IMAGE = "py-code-mode-worker:latest"
"""The image built from ``docker/`` by ``py-code-mode image build``."""

MAX_WARM_POOL = 32


def _word(value: str) -> str:
    if not value.strip() or any(c.isspace() for c in value):
        raise ValueError("must be a non-empty string without spaces")
    return value


def _own_network(network: str) -> str:
    if network == "host" or network.startswith("container:"):
        raise ValueError(
            f"{network!r} would share another network stack and defeat the sandbox; use "
            "'none' (the default), 'allowlist', 'bridge' or a Docker network name"
        )
    return network


def _token(token: str | None) -> str | None:
    if token is not None and len(token) < 16:
        raise ValueError(
            "must be at least 16 characters; make one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return token


def _is_file(path: Path | None) -> Path | None:
    if path is not None and not path.is_file():
        raise ValueError(f"{path} is not a file")
    return path


Word = Annotated[str, Field(strict=True), AfterValidator(_word)]


class ContainerConfig(ExecutorConfig):
    """Settings of the container executor (besides those of :class:`ExecutorConfig`).

    Attributes:
        image: Image to run; any image with ``python`` >= 3.11 works (the worker is
            copied in at start). The default is the image ``docker/`` builds.
        python: Interpreter inside the image.
        startup_timeout: Seconds a container may take to start and answer.
        install_timeout: Seconds one install inside the container may take.
        memory_limit: Memory of the container (``"512m"``, ``"2g"`` or bytes, at
            least 64 MiB; 1 GiB by default); None for no limit. Swap is not added on top.
        cpu_limit: CPUs the container may use (``1.5``); None for no limit.
        pids_limit: Processes and threads in the container (at least 8); None for no
            limit.
        network: ``"none"`` (no network, the default), ``"allowlist"`` (no network of
            its own; only the hosts in ``allow``, through a host-side egress proxy
            whose unix socket is bound in: see :mod:`py_code_mode.execution._egress`),
            ``"bridge"`` or the name of a Docker network. ``"host"`` is refused: it
            would expose the host's network.
        allow: With ``"allowlist"``: host names the container may reach
            (``"pypi.org"``, ``"*.example.com"`` for subdomains, ``"*"`` for any
            public host); runtime installs go through the same proxy.
        deny: With ``"allowlist"``: host patterns refused even when allowed.
        hosts: With ``"allowlist"``: names answered without DNS
            (``{"mirror.internal": "10.0.0.5"}``), like curl's ``--resolve``.
        allow_addresses: With ``"allowlist"``: private ranges that may be reached
            (``["10.0.0.5/32"]``); loopback, private, link-local and metadata
            addresses are refused otherwise.
        env: Variables set in the container. A string value sets the variable;
            ``None`` copies it from the host when set there. Nothing else from the
            host environment enters the container. (``environment`` is accepted as
            a deprecated alias.)
        workdir_size: Size of the writable tmpfs work dir ``/work`` (also the home
            directory and where runtime deps go; at least 16 MiB).
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
        runtime: The engine's OCI runtime for the container; ``"runsc"`` runs it under
            gVisor (a user-space kernel between agent code and the host's kernel), which
            must be registered with dockerd (see docker/README.md). None for the
            engine's default (runc).
        engine: Docker engine URL, or a list of them, instead of the environment's
            (``DOCKER_HOST``): ``tcp://host:2376`` (TLS, see ``engine_cert_path``),
            ``ssh://user@host`` or ``unix:///path``. With several, each session starts
            on the healthy engine running the fewest containers (see
            :mod:`py_code_mode.execution.container.engines`).
        engine_cert_path: Directory with ``ca.pem``, ``cert.pem`` and ``key.pem``
            (Docker's ``DOCKER_CERT_PATH`` layout) for ``tcp://`` engines.
        engine_retry: Seconds an engine that failed its health check is skipped.
    """

    _renamed: ClassVar[dict[str, str]] = {**ExecutorConfig._renamed, "environment": "env"}

    image: Word = DEFAULT_IMAGE
    python: Word = "python3"
    startup_timeout: Seconds = 30.0
    install_timeout: Seconds = 600.0
    memory_limit: MemoryLimit | None = 1 << 30
    cpu_limit: Seconds | None = 1.0
    pids_limit: Annotated[int, Field(ge=8, strict=True)] | None = 256
    network: Annotated[Word, AfterValidator(_own_network)] = "none"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    hosts: dict[str, str] = {}
    allow_addresses: tuple[str, ...] = ()
    env: EnvSetting = {}
    workdir_size: Annotated[int, SizeInput, Field(strict=True), at_least_mib(16)] = 512 << 20
    user: Word = "65534:65534"
    transport: Literal["stdio", "tcp"] = "stdio"
    auth_token: Annotated[str | None, AfterValidator(_token)] = Field(default=None, repr=False)
    allow_unauthenticated: Flag = False
    tcp_port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 8777
    warm_pool: Annotated[int, Field(ge=0, le=MAX_WARM_POOL, strict=True)] = 0
    ca_bundle: Annotated[OptionalPath, AfterValidator(_is_file)] = None
    runtime: Word | None = None
    engine: str | tuple[str, ...] | None = None
    engine_cert_path: OptionalPath = None
    engine_retry: Seconds = 30.0

    @model_validator(mode="after")
    def _engines_are_reachable_urls(self) -> ContainerConfig:
        check_engines(self)
        return self

    @model_validator(mode="after")
    def _check_egress(self) -> ContainerConfig:
        check_egress_settings(
            "ContainerConfig",
            self.network,
            allow=self.allow,
            deny=self.deny,
            hosts=self.hosts,
            allow_addresses=self.allow_addresses,
        )
        if self.network != "allowlist":
            return self
        if self.engine is not None:
            raise ValueError(
                "network='allowlist' binds a unix socket of this machine into the "
                "container, which a remote engine cannot mount; drop engine= or use "
                "network='none'"
            )
        if self.warm_pool:
            raise ValueError(
                "network='allowlist' gives each session its own egress proxy, so its "
                "containers cannot wait in a warm pool; set warm_pool=0"
            )
        return self

    @model_validator(mode="after")
    def _tcp_needs_a_token_and_a_network(self) -> ContainerConfig:
        if self.transport != "tcp":
            return self
        if self.auth_token is None and not self.allow_unauthenticated:
            raise ValueError(
                "transport='tcp' needs an auth_token so that only this host can drive the "
                "worker; set allow_unauthenticated=True only on a trusted network"
            )
        if self.network in ("none", "allowlist"):
            raise ValueError(
                "transport='tcp' needs a network; set network='bridge' (or a Docker network "
                "name), or use transport='stdio', which works without one"
            )
        return self
