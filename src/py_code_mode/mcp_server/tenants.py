"""Who may use the HTTP server, and what each caller may see and use.

A *tenant* is one bearer token with its own storage location and limits. Tokens
come from a TOML file (``--tokens``, or ``$PY_CODE_MODE_TOKENS``) or, for a single tenant, from the
``PY_CODE_MODE_TOKEN`` environment variable. The MCP SDK's bearer-auth hooks do
the HTTP side (a 401 for a missing or unknown token, and an MCP session bound to
the token that opened it); this module supplies the
:class:`~mcp.server.auth.provider.TokenVerifier` and the per-tenant settings.

Token file::

    [defaults]              # optional; applies to every tenant below
    max_sessions = 8        # execution sessions (workers) open at once
    idle_timeout = 900      # seconds without a call before a worker is stopped
    max_runs = 4            # run_code calls in flight at once

    [tenants.alice]
    token = "a long random string"     # or: token_env = "ALICE_TOKEN"
    max_sessions = 2                   # any default may be overridden

Each tenant of a file gets its own storage: Redis prefix ``<prefix>.t.<name>``
or FileStorage directory ``<storage>/tenants/<name>``; tenants never see each
other's workflows, artifacts or deps. The single ``PY_CODE_MODE_TOKEN`` tenant
(named ``default``) uses the server's storage as configured.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from py_code_mode.errors import ConfigError

if TYPE_CHECKING:
    from mcp.server.auth.provider import AccessToken

__all__ = [
    "DEFAULT_LIMITS",
    "MIN_TOKEN_CHARS",
    "TOKENS_FILE_ENV",
    "TOKEN_ENV",
    "Tenancy",
    "Tenant",
    "TenantLimits",
    "is_loopback",
    "tenant_of",
]

TOKEN_ENV = "PY_CODE_MODE_TOKEN"  # noqa: S105 - the name of a variable, not a secret
TOKENS_FILE_ENV = "PY_CODE_MODE_TOKENS"
MIN_TOKEN_CHARS = 16
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
"""The b64token syntax of RFC 6750: what a client can put in an Authorization header."""
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


@dataclass(frozen=True)
class TenantLimits:
    """Per-tenant limits.

    Attributes:
        max_sessions: Execution sessions (each may own a worker) open at once.
        idle_timeout: Seconds without a call after which a session's worker is
            stopped (its variables are lost); ``None`` never stops it.
        max_runs: ``run_code``/``reset_session`` calls in flight at once.
    """

    max_sessions: int = 8
    idle_timeout: float | None = 900.0
    max_runs: int = 4

    def check(self, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` for an unusable value."""
        if self.max_sessions < 1:
            raise ConfigError(f"{where}: max_sessions must be at least 1, got {self.max_sessions}")
        if self.max_runs < 1:
            raise ConfigError(f"{where}: max_runs must be at least 1, got {self.max_runs}")
        timeout = self.idle_timeout
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise ConfigError(
                f"{where}: idle_timeout must be a positive number of seconds or 0 for never, "
                f"got {timeout}"
            )


DEFAULT_LIMITS = TenantLimits()


@dataclass(frozen=True)
class Tenant:
    """One caller identity: its name, storage location and limits.

    Attributes:
        name: Shown in logs and errors; never the token.
        storage_key: Suffix of the tenant's storage location (Redis prefix or
            directory); ``None`` uses the server's storage as configured.
        limits: What this tenant may use at once.
    """

    name: str
    storage_key: str | None
    limits: TenantLimits = DEFAULT_LIMITS
    token: str = field(default="", repr=False, compare=False)

    def redis_prefix(self, prefix: str) -> str:
        """The Redis key prefix of this tenant under the server's ``prefix``."""
        return prefix if self.storage_key is None else f"{prefix}.t.{self.storage_key}"

    def storage_dir(self, base: Path) -> Path:
        """The FileStorage directory of this tenant under the server's storage dir."""
        return base if self.storage_key is None else base / "tenants" / self.storage_key


ANONYMOUS_NAME = "anonymous"


class _LimitsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    max_sessions: int | None = Field(default=None, ge=1, le=10_000)
    idle_timeout: float | None = Field(default=None, ge=0)
    max_runs: int | None = Field(default=None, ge=1, le=10_000)

    def over(self, base: TenantLimits) -> TenantLimits:
        idle = base.idle_timeout if self.idle_timeout is None else self.idle_timeout
        return TenantLimits(
            max_sessions=self.max_sessions or base.max_sessions,
            idle_timeout=None if idle == 0 else idle,
            max_runs=self.max_runs or base.max_runs,
        )


class _TenantModel(_LimitsModel):
    token: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> _TenantModel:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of token or token_env")
        return self


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    defaults: _LimitsModel = Field(default_factory=_LimitsModel)
    tenants: dict[str, _TenantModel] = Field(min_length=1)


def _check_token(token: str, where: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS or _BEARER_TOKEN.fullmatch(token) is None:
        raise ConfigError(
            f"{where}: a bearer token needs at least {MIN_TOKEN_CHARS} characters, all of "
            "A-Z a-z 0-9 - . _ ~ + / (and = at the end, RFC 6750); make one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Tenancy:
    """The tenants of a server and the bearer-token check that finds them.

    Implements the MCP SDK's ``TokenVerifier`` protocol: a known token yields an
    ``AccessToken`` whose ``client_id`` is the tenant name.
    """

    def __init__(self, tenants: list[Tenant]) -> None:
        if not tenants:
            raise ConfigError("no tenants configured")
        names = [tenant.name for tenant in tenants]
        if len(set(names)) != len(names):
            raise ConfigError(f"tenant names must be unique, got {names}")
        digests = [_digest(tenant.token) for tenant in tenants]
        if len(set(digests)) != len(digests):
            raise ConfigError("two tenants share one token; give each its own")
        self._tenants = {tenant.name: tenant for tenant in tenants}
        self._by_digest = list(zip(digests, tenants, strict=True))

    @property
    def tenants(self) -> list[Tenant]:
        """All tenants, in the order configured."""
        return list(self._tenants.values())

    def get(self, name: str) -> Tenant | None:
        """The tenant called ``name``, if any."""
        return self._tenants.get(name)

    def find(self, token: str) -> Tenant | None:
        """The tenant owning ``token``, comparing against every token in constant time.

        Tokens are compared as SHA-256 digests with :func:`hmac.compare_digest`,
        and every tenant is compared, so the time taken tells nothing about which
        token (or how much of one) matched.
        """
        offered = _digest(token)
        found: Tenant | None = None
        for digest, tenant in self._by_digest:
            if hmac.compare_digest(offered, digest) and found is None:
                found = tenant
        return found

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's hook: an access token for a known bearer token, else ``None``."""
        from mcp.server.auth.provider import AccessToken

        tenant = self.find(token)
        if tenant is None:
            return None
        return AccessToken(
            token=_digest(token).hex()[:16], client_id=tenant.name, scopes=[], subject=tenant.name
        )

    @classmethod
    def single(cls, token: str, limits: TenantLimits, *, where: str = TOKEN_ENV) -> Tenancy:
        """One tenant called ``default`` that uses the server's storage as configured."""
        return cls([Tenant("default", None, limits, _check_token(token, where))])

    @classmethod
    def from_file(cls, path: Path, defaults: TenantLimits) -> Tenancy:
        """Tenants from a TOML token file (see the module docstring).

        Raises:
            ConfigError: The file is missing, unreadable, or has a bad entry; the
                message names the file and the entry.
        """
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--tokens {path}: cannot read the file: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--tokens {path}: not valid TOML: {exc}") from exc
        try:
            model = _FileModel.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(f"--tokens {path}: {problems}") from exc
        base = model.defaults.over(defaults)
        tenants: list[Tenant] = []
        for name, entry in model.tenants.items():
            where = f"--tokens {path}: tenants.{name}"
            if _NAME.fullmatch(name) is None:
                raise ConfigError(
                    f"{where}: a tenant name is 1-40 lowercase letters, digits, '_' or '-'"
                )
            if entry.token_env is not None:
                token = os.environ.get(entry.token_env, "")
                if not token:
                    raise ConfigError(f"{where}: environment variable {entry.token_env} is unset")
            else:
                token = entry.token or ""
            limits = entry.over(base)
            limits.check(where)
            tenants.append(Tenant(name, name, limits, _check_token(token, where)))
        return cls(tenants)


def tenant_of(request_context: Any) -> str | None:
    """The tenant name of the bearer token that authenticated a request, if any.

    The SDK's auth middleware puts the verified user on the HTTP request's ASGI
    scope; stdio requests and unauthenticated servers have none.
    """
    request = getattr(request_context, "request", None)
    scope = getattr(request, "scope", None)
    if not isinstance(scope, dict):
        return None
    user = scope.get("user")
    token = getattr(user, "access_token", None)
    client_id = getattr(token, "client_id", None)
    return client_id if isinstance(client_id, str) else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost`` or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
