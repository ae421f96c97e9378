"""Settings of the subprocess executor."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from py_code_mode.execution._configured import (
    Count,
    EnvSetting,
    ExecutorConfig,
    Flag,
    MemoryLimit,
    OptionalPath,
    Seconds,
)
from py_code_mode.execution._egress import check_egress_settings
from py_code_mode.execution.subprocess.interpreter import check_python_version

__all__ = ["SubprocessConfig"]


class SubprocessConfig(ExecutorConfig):
    """Settings of the subprocess executor (besides those of :class:`ExecutorConfig`).

    Attributes:
        python_version: Interpreter for the worker: ``"3.12"``, ``"3.12.1"`` or a path
            to a ``python3`` executable (>= 3.11); the host's version when omitted.
            Versions are looked up in pyenv, uv-managed Pythons and ``PATH``.
        venv_path: Use (or create) this venv instead of a cached one; deps are
            installed into it when missing.
        cache_venv: Reuse a venv cached by Python version and deps set (the default);
            ``False`` builds a private venv per session, deleted at close.
        cache_dir: Where cached venvs and the worker's code live; defaults to
            ``$PY_CODE_MODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/py-code-mode``, else
            ``~/.cache/py-code-mode``.
        startup_timeout: Seconds the worker process may take to start and answer
            (venv creation and installs are not included).
        install_timeout: Seconds one ``uv`` venv creation or install may take.
        memory_limit: Address-space limit of the worker and its children (``"4g"``,
            ``"512m"`` or bytes, at least 64 MiB); None for no limit. Programs that
            reserve huge address ranges (browsers, some JITs) need it raised.
            (``memory_limit_mb`` is accepted as a deprecated alias.)
        max_processes: Processes and threads the worker may add to its user's count
            (``RLIMIT_NPROC``, not enforced for root); None for no limit.
        max_open_files: Open file descriptors per process (at least 32); None for no
            limit.
        max_file_size_mb: Largest file the worker may write (MiB); None for no limit.
        env: Extra environment variables for the worker. A string value sets the
            variable; ``None`` copies it from the host when set there. Everything
            else from the host environment is withheld except a short allowlist
            (``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``LANG``, ``LC_*``, ``TZ``,
            ``TMPDIR``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``).
        working_dir: The worker's working directory; a private temporary directory,
            removed at close, when omitted (in the jail: a private size-capped tmpfs
            at ``/work``; a given directory is shared read-write with agent code).
        isolation: ``"bwrap"`` runs every worker in a bubblewrap jail (own user, pid,
            ipc, uts, net and mount namespaces, uid 65534, no capabilities, the
            interpreter and venv read-only, private ``/tmp``, no host home, no
            network) and refuses to start where bwrap cannot; ``"none"`` runs it as a
            plain child process with your user's access. Default (None): ``"bwrap"``
            on Linux, ``"none"`` elsewhere.
        tmp_size_mb: Size cap (MiB) of the jail's private ``/tmp`` and working
            directory, each.
        network: Network of a jailed worker: ``"none"`` (the default: only its own
            loopback), ``"allowlist"`` (only the hosts in ``allow``, through the
            host's egress proxy; see :mod:`py_code_mode.execution._egress`) or
            ``"full"`` (the host's network, with everything it reaches, loopback
            services included).
        allow: With ``"allowlist"``: host names the jail may reach (``"pypi.org"``,
            ``"*.example.com"`` for subdomains, ``"*"`` for any public host). Runtime
            installs go through the same proxy.
        deny: With ``"allowlist"``: host patterns refused even when allowed.
        hosts: With ``"allowlist"``: names answered without DNS
            (``{"mirror.internal": "10.0.0.5"}``), like curl's ``--resolve``.
        allow_addresses: With ``"allowlist"``: private ranges that may be reached
            (``["10.0.0.5/32"]`` for a private mirror); loopback, private,
            link-local and metadata addresses are refused otherwise.
        warm_pool: Jailed workers to keep started, process-wide, for new sessions with
            this configuration (cached venv, no ``working_dir``); 0 disables the pool.
    """

    _renamed: ClassVar[dict[str, str]] = {
        **ExecutorConfig._renamed,
        "memory_limit_mb": "memory_limit",
    }

    python_version: str | Path | None = None
    venv_path: OptionalPath = None
    cache_venv: Flag = True
    cache_dir: OptionalPath = None
    startup_timeout: Seconds = 30.0
    install_timeout: Seconds = 600.0
    memory_limit: MemoryLimit | None = 4 << 30
    max_processes: Count | None = 256
    max_open_files: Annotated[int, Field(ge=32, strict=True)] | None = 1024
    max_file_size_mb: Count | None = 1024
    env: EnvSetting = {}
    working_dir: OptionalPath = None
    isolation: Literal["bwrap", "none"] | None = None
    tmp_size_mb: Count = 512
    network: Literal["none", "allowlist", "full"] = "none"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    hosts: dict[str, str] = {}
    allow_addresses: tuple[str, ...] = ()
    warm_pool: Annotated[int, Field(ge=0, le=8, strict=True)] = 0

    @classmethod
    def _convert_renamed(cls, old: str, value: Any) -> Any:
        if old == "memory_limit_mb" and isinstance(value, int) and not isinstance(value, bool):
            return value << 20
        return value

    @model_validator(mode="after")
    def _check_egress(self) -> SubprocessConfig:
        check_egress_settings(
            "SubprocessConfig",
            self.network,
            allow=self.allow,
            deny=self.deny,
            hosts=self.hosts,
            allow_addresses=self.allow_addresses,
        )
        if self.network == "allowlist" and self.isolation == "none":
            raise ValueError(
                "network='allowlist' needs the jail (isolation='bwrap'): without it the "
                "worker has the host's network and nothing to enforce the allowlist"
            )
        if self.network == "allowlist" and self.warm_pool:
            raise ValueError(
                "network='allowlist' gives each session its own egress proxy, so its "
                "workers cannot wait in a warm pool; set warm_pool=0"
            )
        return self

    @field_validator("python_version", mode="before")
    @classmethod
    def _check_python_version(cls, value: Any) -> Any:
        check_python_version(value)
        return value
