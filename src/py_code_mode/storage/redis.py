"""RedisStorage: one workflow library and artifact store shared by many agents.

Every key lives under ``{prefix}:``, so several libraries can share one Redis::

    {prefix}:layout               layout version of this library ("1")
    {prefix}:workflows            hash  name -> "<created_at> LF <record JSON, with source>"
    {prefix}:artifacts            hash  name -> "<created_at> LF <index entry JSON>"
    {prefix}:artifact:{name}      string, the artifact payload (raw bytes)
    {prefix}:artifacts:bytes      running total of the payload sizes (for quotas)
    {prefix}:deps                 list  canonical distribution names, in insertion order
    {prefix}:deps:specs           hash  canonical name -> requirement spec as given
    {prefix}:vectors:{model_id}   hash  content hash -> little-endian float32 vector

Why it is built the way it is:

* Agents on different machines write concurrently, so every update that touches
  several keys is one Lua script or one MULTI/EXEC transaction: Redis runs it
  whole or not at all, and a connection lost halfway leaves nothing half written.
  Reads that combine keys (an index entry and its payload) run in MULTI/EXEC too,
  so they always see one consistent save.
* ``created_at`` heads each entry on a line of its own, and the save script keeps
  the stored one: a read-modify-write of the record on the client would race with
  other writers, and re-encoding JSON inside Lua would change floats and lists.
  One hash per kind also makes a listing one HVALS command.
* Quotas on total artifact bytes must not rescan every payload per save, so the save
  and delete scripts keep a running total next to the index (rebuilt with STRLEN
  when missing, e.g. in a library written by an older version). The check and the
  write are one script, so two agents cannot both squeeze under a limit.
* Every call reads Redis: a workflow saved by one agent must be visible to every
  other agent on its very next call. Only the parsing of unchanged records is
  reused between listings.
* Payloads are stored as raw bytes (the client never decodes responses) and JSON
  documents are written with ASCII escapes, so any str (even lone surrogates) and
  any bytes value comes back exactly.
"""

from __future__ import annotations

import array
import asyncio
import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    RedisError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from py_code_mode._private import storage_rules
from py_code_mode._private.artifact_codec import (
    decode_artifact,
    encode_artifact,
    json_bytes,
    not_found,
)
from py_code_mode._private.names import validate_workflow_name
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    StorageError,
)
from py_code_mode.models import ArtifactInfo, WorkflowRecord
from py_code_mode.storage.protocol import ArtifactValue

if TYPE_CHECKING:
    from py_code_mode.quotas import Quotas

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "DEFAULT_PREFIX", "RedisStorage", "mask_url"]

logger = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "py-code-mode"

DEFAULT_MAX_VALUE_BYTES: Final = 64 * 1024 * 1024
"""Largest artifact payload accepted by default (64 MiB).

Lower than FileStorage's default because Redis keeps every value in memory and
serves one command at a time: a huge value costs RAM on a shared server and
stalls every other agent while it is copied.
"""

_REDIS_MAX_BULK: Final = 512 * 1024 * 1024
"""Redis refuses larger strings (``proto-max-bulk-len`` default)."""

_LAYOUT_VERSION: Final = b"1"
_CONNECT_TIMEOUT: Final = 5.0
_SOCKET_TIMEOUT: Final = 15.0
_RETRIES: Final = 2
_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_SCHEMES: Final = ("redis", "rediss", "unix")
_SECRET_QUERY_KEYS: Final = frozenset({"password", "pass", "pwd", "auth", "token"})

_T = TypeVar("_T")

# KEYS: entries hash, payload key, running total key
# ARGV: name, entry JSON, created_at when new, payload, payload key prefix,
#       max single size, max total bytes, max count (-1: no quota)
# Returns {"ok", created_at} or {quota name, value that was refused}.
_SAVE_ARTIFACT_LUA: Final = rb"""
local total = redis.call('GET', KEYS[3])
if total then
  total = tonumber(total)
else
  total = 0
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    total = total + redis.call('STRLEN', ARGV[5] .. name)
  end
  redis.call('SET', KEYS[3], total)
end
local size = string.len(ARGV[4])
local old = redis.call('HGET', KEYS[1], ARGV[1])
local old_size = 0
if old then
  old_size = redis.call('STRLEN', KEYS[2])
end
local max_size, max_total, max_count = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if max_size >= 0 and size > max_size then
  return {'max_artifact_bytes', size}
end
if not old and max_count >= 0 then
  local count = redis.call('HLEN', KEYS[1]) + 1
  if count > max_count then
    return {'max_artifacts', count}
  end
end
local new_total = total - old_size + size
if max_total >= 0 and new_total > total and new_total > max_total then
  return {'max_total_artifact_bytes', new_total}
end
local created = ARGV[3]
if old then
  local kept = string.match(old, '^([^\n]+)\n')
  if kept then
    created = kept
  end
end
redis.call('SET', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], created .. '\n' .. ARGV[2])
redis.call('INCRBY', KEYS[3], size - old_size)
return {'ok', created}
"""

# KEYS: entries hash, payload key, running total key; ARGV: name.
# Returns {1 when it was in the index, 1 when it had a payload}.
_DELETE_ARTIFACT_LUA: Final = b"""
local size = redis.call('STRLEN', KEYS[2])
local in_index = redis.call('HDEL', KEYS[1], ARGV[1])
local had_payload = redis.call('DEL', KEYS[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('DECRBY', KEYS[3], size)
end
return {in_index, had_payload}
"""

# KEYS: workflows hash; ARGV: name, entry JSON, created_at when new, max count (-1: none)
# Returns {"ok", created_at} or {"max_workflows", the count that was refused}.
_SAVE_WORKFLOW_LUA: Final = rb"""
local old = redis.call('HGET', KEYS[1], ARGV[1])
local max_count = tonumber(ARGV[4])
if not old and max_count >= 0 then
  local count = redis.call('HLEN', KEYS[1]) + 1
  if count > max_count then
    return {'max_workflows', count}
  end
end
local created = ARGV[3]
if old then
  local kept = string.match(old, '^([^\n]+)\n')
  if kept then
    created = kept
  end
end
redis.call('HSET', KEYS[1], ARGV[1], created .. '\n' .. ARGV[2])
return {'ok', created}
"""

# KEYS: order list, specs hash; ARGV: canonical name, spec.
# A new distribution goes to the end; an existing one keeps its place.
_ADD_DEP_LUA: Final = b"""
if redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('LREM', KEYS[1], 0, ARGV[1])
  redis.call('RPUSH', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: order list, specs hash; ARGV: canonical name. Returns 1 when it was listed.
_REMOVE_DEP_LUA: Final = b"""
local removed = redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('LREM', KEYS[1], 0, ARGV[1])
return removed
"""


class _Script:
    """A Lua script run by SHA, loaded again after a server restart emptied its cache."""

    __slots__ = ("sha", "source")

    def __init__(self, source: bytes) -> None:
        self.source = source
        self.sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()

    async def run(
        self, client: aioredis.Redis, keys: Sequence[str], args: Sequence[bytes | str]
    ) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)


_SAVE_ARTIFACT = _Script(_SAVE_ARTIFACT_LUA)
_DELETE_ARTIFACT = _Script(_DELETE_ARTIFACT_LUA)
_SAVE_WORKFLOW = _Script(_SAVE_WORKFLOW_LUA)
_ADD_DEP = _Script(_ADD_DEP_LUA)
_REMOVE_DEP = _Script(_REMOVE_DEP_LUA)


class RedisStorage:
    """A :class:`~py_code_mode.storage.protocol.StorageBackend` on a Redis server.

    Many agents (processes, machines) can share one library: a workflow or artifact
    saved by one is visible to all on their next call, and concurrent writers lose
    nothing. Values behave exactly as in :class:`~py_code_mode.FileStorage`:
    ``load_artifact`` returns the type that was saved, overwriting keeps
    ``created_at``, and the deps list keeps insertion order.

    Connections are made on first use; :meth:`open` connects and checks the server
    up front. Every method works after :meth:`close` too, reconnecting as needed.
    When Redis goes away mid-session the call fails with
    :class:`~py_code_mode.errors.StorageError` and the next call after Redis is back
    succeeds; nothing is left half written.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://...`` or
            ``unix:///path.sock``. Connect and socket timeouts default to 5 s and
            15 s; URL query options (``?socket_timeout=...``) override them.
        redis: An existing ``redis.asyncio.Redis`` client to use instead of ``url``
            (for custom TLS, sentinel pools, ...). It is not closed by :meth:`close`.
            A client that decodes responses is used through a bytes-safe twin.
        prefix: Namespace of every key (letters, digits, ``_``, ``-``, ``.``; no
            ``:``, so that one prefix can never be the start of another's keys).
        max_value_bytes: Largest artifact payload (and artifact metadata) accepted.

    Raises:
        ConfigError: Not exactly one of ``url`` and ``redis``, a malformed URL, an
            unusable prefix, or a bad ``max_value_bytes``.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        redis: aioredis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        if (url is None) == (redis is None):
            raise ConfigError(
                "RedisStorage needs exactly one of url='redis://host:6379/0' or "
                "redis=<redis.asyncio.Redis client>"
            )
        if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
            raise ConfigError(
                f"RedisStorage prefix {prefix!r} must be 1-100 characters of letters, digits, "
                "'_', '-' or '.', starting with a letter or digit (no ':'), e.g. 'my-agents'"
            )
        if (
            isinstance(max_value_bytes, bool)
            or not isinstance(max_value_bytes, int)
            or not 0 < max_value_bytes <= _REDIS_MAX_BULK
        ):
            raise ConfigError(
                f"max_value_bytes must be an integer between 1 and {_REDIS_MAX_BULK:,} "
                f"(the largest value Redis stores), got {max_value_bytes!r}"
            )
        self._prefix = prefix
        self._max_value_bytes = max_value_bytes
        self._url = url
        self._given = redis
        self._client: aioredis.Redis | None = None  # made on first use, in its event loop
        self._loop: asyncio.AbstractEventLoop | None = None
        if url is not None:
            self._where = mask_url(url)
            self._owned = True
            _client_from_url(url)  # a malformed URL fails here rather than at first use
        else:
            if not isinstance(redis, aioredis.Redis):
                raise ConfigError(
                    "RedisStorage(redis=...) needs a redis.asyncio.Redis client, got "
                    f"{type(redis).__name__} (sync clients and RedisCluster are not supported)"
                )
            self._where = _describe_client(redis)
            self._owned = _decodes(redis)  # then we use (and close) a bytes-safe twin
        # Decoded records of the last listing, reused while Redis returns the same
        # bytes: parsing 1,000 JSON records is most of a listing's cost. Every listing
        # still reads everything, so other writers' changes show at once.
        self._decoded: dict[bytes, WorkflowRecord | str] = {}
        self._k_layout = f"{prefix}:layout"
        self._k_workflows = f"{prefix}:workflows"
        self._k_artifacts = f"{prefix}:artifacts"
        self._k_artifact_bytes = f"{prefix}:artifacts:bytes"
        self._k_deps = f"{prefix}:deps"
        self._k_dep_specs = f"{prefix}:deps:specs"

    @property
    def prefix(self) -> str:
        """Namespace of every key this backend touches."""
        return self._prefix

    @property
    def max_value_bytes(self) -> int:
        """Largest artifact payload accepted, in bytes."""
        return self._max_value_bytes

    @property
    def location(self) -> str:
        """Where the server is, safe to log: the URL with its password masked."""
        return self._where

    def __repr__(self) -> str:
        return f"RedisStorage(url={self._where!r}, prefix={self._prefix!r})"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, and check that the server answers and holds a compatible library.

        Idempotent.

        Raises:
            StorageError: Redis is unreachable or refuses the credentials (the message
                names the URL with its password masked), or the prefix holds data of a
                newer layout.
        """

        async def check(client: aioredis.Redis) -> bytes | None:
            await client.ping()
            pipe = client.pipeline(transaction=True)
            pipe.set(self._k_layout, _LAYOUT_VERSION, nx=True)
            pipe.get(self._k_layout)
            results = await pipe.execute()
            return cast(bytes | None, results[1])

        layout = await self._run(check, "connect")
        if layout != _LAYOUT_VERSION:
            raise StorageError(
                f"Redis at {self._where}, prefix {self._prefix!r}: key {self._k_layout!r} "
                f"says layout {layout!r}, but this version of py-code-mode reads layout "
                f"{_LAYOUT_VERSION.decode()}; upgrade py-code-mode or use another prefix"
            )

    async def close(self) -> None:
        """Disconnect (a client passed in as ``redis=`` stays open). Idempotent."""
        client, self._client = self._client, None
        if client is None or not self._owned:
            return
        if self._loop is not asyncio.get_running_loop():
            return  # its connections died with their event loop
        try:
            await client.aclose()
        except (RedisError, OSError) as exc:
            logger.debug("ignoring error while closing the Redis connection: %s", exc)

    def _connection(self) -> aioredis.Redis:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._owned and self._loop is not loop:
            # Connections belong to the event loop that made them; a second
            # asyncio.run() would otherwise fail with "Event loop is closed".
            self._client = None
        if self._client is None:
            self._loop = loop
            if self._url is not None:
                self._client = _client_from_url(self._url)
            else:
                assert self._given is not None
                self._client = _bytes_client(self._given)
        return self._client

    async def _run(self, op: Callable[[aioredis.Redis], Awaitable[_T]], what: str) -> _T:
        """Run ``op`` with the client, translating Redis failures into StorageError."""
        try:
            return await op(self._connection())
        except AuthenticationError as exc:
            raise StorageError(
                f"Redis at {self._where} refused the credentials while trying to {what}: "
                f"{exc}; check the user name and password in the URL"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StorageError(
                f"cannot reach Redis at {self._where} to {what}: {exc}. Check that the "
                "server is running and reachable; the next call retries the connection"
            ) from exc
        except RedisError as exc:
            raise StorageError(f"Redis at {self._where} failed to {what}: {exc}") from exc

    # -- workflows -------------------------------------------------------------------

    async def list_workflows(self) -> list[WorkflowRecord]:
        """All workflows, sorted by name; unreadable entries are skipped and logged once."""
        entries = await self._run(lambda c: _hvals(c, self._k_workflows), "list workflows")
        records = []
        decoded: dict[bytes, WorkflowRecord | str] = {}
        for raw in entries:
            result = self._decoded.get(raw)
            if result is None:
                try:
                    result = _workflow_from_entry(None, raw)
                except StorageError as exc:
                    result = str(exc)
                    logger.warning("skipping workflow in Redis at %s: %s", self._where, exc)
            decoded[raw] = result
            if not isinstance(result, str):
                records.append(result)
        self._decoded = decoded
        records.sort(key=lambda r: r.name)
        return records

    async def get_workflow(self, name: str) -> WorkflowRecord | None:
        """One workflow, or ``None`` when absent.

        Raises:
            StorageError: Redis failed, or the stored entry is not readable.
        """
        raw = await self._run(
            lambda c: _hget(c, self._k_workflows, name), f"read workflow {name!r}"
        )
        return None if raw is None else _workflow_from_entry(name, raw)

    async def save_workflow(self, record: WorkflowRecord, *, quotas: Quotas | None = None) -> None:
        """Create or replace a workflow; an existing one keeps its ``created_at``.

        Raises:
            WorkflowError: The source is not UTF-8 or the metadata is not JSON data.
            WorkflowQuotaError: A new workflow would exceed ``quotas.max_workflows``
                (counted in the same script as the write).
        """
        name = record.name
        metadata = storage_rules.workflow_metadata(record)
        storage_rules.workflow_source_bytes(name, record.source)
        now = time.time()
        entry = {**record.to_dict(), "metadata": metadata, "updated_at": record.updated_at or now}
        del entry["created_at"]
        max_count = -1 if quotas is None else quotas.max_workflows
        outcome, value = await self._run(
            lambda client: _SAVE_WORKFLOW.run(
                client,
                [self._k_workflows],
                [name, _dump(entry), repr(record.created_at or now), str(max_count)],
            ),
            f"save workflow {name!r}",
        )
        if outcome != b"ok" and quotas is not None:
            raise quotas.exceeded(outcome.decode(), int(value), "the workflow library", "workflows")

    async def delete_workflow(self, name: str) -> bool:
        """Remove a workflow; ``False`` when it did not exist."""
        removed = await self._run(
            lambda c: c.hdel(self._k_workflows, name), f"delete workflow {name!r}"
        )
        return bool(removed)

    # -- artifacts -------------------------------------------------------------------

    async def list_artifacts(self) -> list[ArtifactInfo]:
        """Index entries of all artifacts, sorted by name."""
        entries = await self._run(lambda c: _hvals(c, self._k_artifacts), "list artifacts")
        infos = []
        for raw in entries:
            try:
                infos.append(_info_from_entry(None, raw))
            except StorageError as exc:
                logger.warning("skipping artifact in Redis at %s: %s", self._where, exc)
        infos.sort(key=lambda i: i.name)
        return infos

    async def save_artifact(
        self,
        name: str,
        data: ArtifactValue,
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        quotas: Quotas | None = None,
    ) -> ArtifactInfo:
        """Store ``data`` under ``name``, keeping ``created_at`` of a previous value.

        The payload, its index entry and its creation time are written by one
        script, so readers see the old artifact or the new one, never a mix. The
        same script checks ``quotas`` against the running total and count.

        Raises:
            ArtifactError: ``data`` is of an unsupported type, or it (or its metadata)
                is larger than ``max_value_bytes``.
            ArtifactQuotaError: Over a quota of ``quotas``; nothing was written.
            StorageError: Redis failed; the previous value is unchanged.
        """
        meta = dict(metadata or {})
        kind, payload = encode_artifact(
            name, data, self._max_value_bytes, limit_name="RedisStorage max_value_bytes"
        )
        meta_size = len(json_bytes(meta, f"metadata of artifact {name!r}", ArtifactError))
        if meta_size > self._max_value_bytes:
            raise ArtifactError(
                f"metadata of artifact {name!r} is {meta_size:,} bytes, over the limit of "
                f"{self._max_value_bytes:,} bytes (max_value_bytes); keep metadata small"
            )
        now = time.time()
        entry = {
            "name": name,
            "kind": kind,
            "description": description,
            "metadata": meta,
            "size": len(payload),
            "updated_at": now,
        }
        limits = (
            ["-1", "-1", "-1"]
            if quotas is None
            else [
                str(quotas.max_artifact_bytes),
                str(quotas.max_total_artifact_bytes),
                str(quotas.max_artifacts),
            ]
        )
        outcome, stored_created = await self._run(
            lambda client: _SAVE_ARTIFACT.run(
                client,
                [self._k_artifacts, self._payload_key(name), self._k_artifact_bytes],
                [name, _dump(entry), repr(now), payload, self._payload_key(""), *limits],
            ),
            f"save artifact {name!r}",
        )
        if outcome != b"ok" and quotas is not None:
            quota = outcome.decode()
            what = f"artifact {name!r}" if quota == "max_artifact_bytes" else "the artifact store"
            raise quotas.exceeded(quota, int(stored_created), what, "artifacts")
        return ArtifactInfo(
            name=name,
            kind=kind,
            description=description,
            metadata=meta,
            size=len(payload),
            created_at=float(stored_created),
            updated_at=now,
        )

    async def load_artifact(self, name: str) -> ArtifactValue:
        """The stored value, of the type it was saved with.

        Raises:
            ArtifactNotFoundError: No artifact has this name.
            ArtifactError: The stored payload does not decode as its recorded kind.
            StorageError: Redis failed.
        """

        async def read(client: aioredis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)
            pipe.hget(self._k_artifacts, name)
            pipe.get(self._payload_key(name))
            return await pipe.execute()

        raw, payload = await self._run(read, f"load artifact {name!r}")
        if raw is None:
            raise not_found(name)
        if payload is None:
            raise ArtifactNotFoundError(
                f"artifact {name!r} is in the index but its payload key "
                f"{self._payload_key(name)!r} is gone (deleted by hand, or evicted by a "
                "Redis maxmemory policy); delete it or save it again"
            )
        info = _info_from_entry(name, raw)
        return decode_artifact(name, info.kind, payload, where="the stored payload")

    async def get_artifact_info(self, name: str) -> ArtifactInfo | None:
        """Index entry of one artifact, or ``None`` when absent."""
        raw = await self._run(
            lambda c: _hget(c, self._k_artifacts, name), f"read artifact {name!r}"
        )
        return None if raw is None else _info_from_entry(name, raw)

    async def delete_artifact(self, name: str) -> bool:
        """Remove an artifact and its index entry; ``False`` when neither existed."""
        in_index, had_payload = await self._run(
            lambda client: _DELETE_ARTIFACT.run(
                client,
                [self._k_artifacts, self._payload_key(name), self._k_artifact_bytes],
                [name],
            ),
            f"delete artifact {name!r}",
        )
        return bool(in_index or had_payload)

    def _payload_key(self, name: str) -> str:
        return f"{self._prefix}:artifact:{name}"

    # -- deps ------------------------------------------------------------------------

    async def list_deps(self) -> list[str]:
        """The persisted requirement specs, in insertion order."""

        async def read(client: aioredis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=True)
            pipe.lrange(self._k_deps, 0, -1)
            pipe.hgetall(self._k_dep_specs)
            return await pipe.execute()

        order, specs = await self._run(read, "read the deps list")
        return [specs[n].decode("utf-8") for n in order if n in specs]

    async def add_dep(self, spec: str) -> None:
        """Add ``spec``, replacing (in place) any entry for the same distribution.

        As in FileStorage, policy (no URLs, no installer options) is the caller's
        check; here ``spec`` only has to be one requirement on one line.

        Raises:
            DependencyError: ``spec`` is not a single-line requirement.
        """
        text, target = storage_rules.dep_spec(spec)
        await self._run(
            lambda client: _ADD_DEP.run(client, [self._k_deps, self._k_dep_specs], [target, text]),
            "update the deps list",
        )

    async def remove_dep(self, name: str) -> bool:
        """Remove the entry for distribution ``name`` (a name or a spec).

        Raises:
            DependencyError: ``name`` is neither a package name nor a requirement.
        """
        target = storage_rules.dep_target(name)
        removed = await self._run(
            lambda client: _REMOVE_DEP.run(client, [self._k_deps, self._k_dep_specs], [target]),
            "update the deps list",
        )
        return bool(removed)

    # -- embedding cache -------------------------------------------------------------

    async def get_vectors(self, model_id: str, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached vectors of ``model_id`` for ``keys``; missing keys are left out."""
        key = self._vector_key(model_id)
        storage_rules.check_vector_keys(keys)
        wanted = list(dict.fromkeys(k for k in keys if isinstance(k, str)))
        if not wanted:
            return {}

        async def read(client: aioredis.Redis) -> list[Any]:
            return await client.hmget(key, wanted)

        values = await self._run(read, "read the embedding cache")
        found: dict[str, list[float]] = {}
        for content_key, raw in zip(wanted, values, strict=True):
            if raw is None:
                continue
            try:
                found[content_key] = _unpack_vector(raw)
            except ValueError as exc:
                logger.warning(
                    "ignoring corrupt cached vector %r of model %r in Redis at %s: %s",
                    content_key,
                    model_id,
                    self._where,
                    exc,
                )
        return found

    async def put_vectors(self, model_id: str, vectors: Mapping[str, Sequence[float]]) -> None:
        """Add or replace cached vectors of ``model_id``, stored as packed float32.

        Raises:
            StorageError: A key is not a string, a vector holds non-numbers, or Redis
                failed.
        """
        key = self._vector_key(model_id)
        packed = storage_rules.convert_vectors(vectors, _pack_vector)
        if not packed:
            return

        fields: Mapping[Any, bytes] = packed  # redis-py wants a wider key type

        async def write(client: aioredis.Redis) -> None:
            await client.hset(key, mapping=fields)

        await self._run(write, "write the embedding cache")

    def _vector_key(self, model_id: str) -> str:
        return f"{self._prefix}:vectors:{storage_rules.check_model_id(model_id)}"


# -- helpers for callers -------------------------------------------------------------


def mask_url(url: object) -> str:
    """``url`` with its password (in the authority or the query) replaced by ``***``.

    Safe to log and to show in error messages; anything unparseable is masked whole.
    """
    if not isinstance(url, str):
        return f"<not a URL: {type(url).__name__}>"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:***@{host}"
            elif parts.scheme in ("redis", "rediss"):
                netloc = f"***@{host}"  # redis://secret@host: a lone userinfo is the password
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*/",
            )
        if "://" not in url:
            return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
        masked = f"{parts.scheme}://{netloc}{parts.path}"  # keeps unix:/// as written
        masked += f"?{query}" if query else ""
        return masked + (f"#{parts.fragment}" if parts.fragment else "")
    except ValueError:
        return "<unparseable Redis URL>"


# -- internals -----------------------------------------------------------------------


async def _hvals(client: aioredis.Redis, key: str) -> list[bytes]:
    # The client never decodes responses, so values are bytes.
    return cast(list[bytes], await client.hvals(key))


async def _hget(client: aioredis.Redis, key: str, field: str) -> bytes | None:
    return cast(bytes | None, await client.hget(key, field))


def _client_from_url(url: str) -> aioredis.Redis:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"Redis URL must be a non-empty string, got {url!r}")
    masked = mask_url(url)
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ConfigError(
            f"Redis URL {masked!r} must start with redis://, rediss:// or unix://, "
            "e.g. redis://localhost:6379/0"
        )
    try:
        return aioredis.Redis.from_url(
            url,
            decode_responses=False,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            socket_timeout=_SOCKET_TIMEOUT,
            retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), _RETRIES),
        )
    except (ValueError, TypeError) as exc:
        # Messages of redis-py's URL parser never include the password.
        raise ConfigError(f"Redis URL {masked!r} is not valid: {exc}") from None


def _decodes(client: aioredis.Redis) -> bool:
    return bool(client.connection_pool.connection_kwargs.get("decode_responses", False))


def _bytes_client(client: aioredis.Redis) -> aioredis.Redis:
    """``client`` itself, or a twin on the same server that returns raw bytes."""
    if not _decodes(client):
        return client
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    twin = aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return aioredis.Redis.from_pool(twin)


def _describe_client(client: aioredis.Redis) -> str:
    """A password-free URL for messages about a client that was passed in."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if issubclass(pool.connection_class, UnixDomainSocketConnection):
        return f"unix://{kwargs.get('path', '')}?db={db}"
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"


def _dump(document: Mapping[str, Any]) -> bytes:
    # ASCII escapes make any str (even lone surrogates) round-trip through UTF-8 bytes.
    return json.dumps(document, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode(
        "ascii"
    )


def _split_entry(what: str, raw: bytes) -> tuple[float, dict[str, Any]]:
    """``created_at`` and the JSON document of a stored entry."""
    stamp, newline, body = raw.partition(b"\n")
    try:
        if not newline:
            raise ValueError("no created_at line")  # noqa: TRY301
        created = float(stamp)
        document = json.loads(body)
    except ValueError as exc:  # also JSONDecodeError and UnicodeDecodeError
        raise StorageError(f"{what} is not readable ({exc}); save it again") from None
    if not isinstance(document, dict):
        raise StorageError(f"{what} holds {type(document).__name__}, not a JSON object")
    return created, document


def _workflow_from_entry(name: str | None, raw: bytes) -> WorkflowRecord:
    """Decode a stored workflow; ``name`` is the hash field when known."""
    what = f"workflow entry {name!r}" if name else "a workflow entry"
    created, entry = _split_entry(what, raw)
    entry["created_at"] = created
    if name is not None:
        entry["name"] = name
    try:
        record = WorkflowRecord.from_dict(entry)
        validate_workflow_name(record.name)
    except (KeyError, TypeError, ValueError) as exc:
        raise StorageError(f"{what} is malformed ({exc!r}); save it again") from None
    if not isinstance(record.source, str):
        raise StorageError(f"{what} has no source text; save it again")
    return record


def _info_from_entry(name: str | None, raw: bytes) -> ArtifactInfo:
    """Decode a stored index entry; ``name`` is the hash field when known."""
    what = f"index entry of artifact {name!r}" if name else "an artifact index entry"
    created, entry = _split_entry(what, raw)
    try:
        return storage_rules.artifact_info_from_entry(entry, name=name, created_at=created)
    except storage_rules.BadEntryError as exc:
        raise StorageError(f"{what} {exc}") from None


def _pack_vector(vector: Sequence[float]) -> bytes:
    if isinstance(vector, str | bytes):  # array() would take bytes as raw machine values
        raise TypeError(f"got {type(vector).__name__}")
    # array() refuses str items, which float() would parse: as in FileStorage.
    values = array.array("f", vector)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tobytes()


def _unpack_vector(raw: bytes) -> list[float]:
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    values = array.array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()
