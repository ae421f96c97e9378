"""FileStorage: the library of workflows, artifacts, deps and caches as plain files.

Layout under ``base_path`` (every part is created on demand)::

    workflows/<name>.py              workflow source, byte for byte
    workflows/.meta/<name>.json      sidecar: explicit description, metadata, timestamps
    artifacts/<name>                 artifact payloads (names may contain '/')
    artifacts/.index.json            kind, description, metadata, size, timestamps
    artifacts/.index.log             changes since .index.json, one JSON line each
                                     (only in libraries whose index is large)
    requirements.txt                 the deps list, one spec a line
    .cache/embeddings/<model>/vectors.bin   embedding cache (stdlib ``array``, no pickle)
    .lock                            fcntl.flock lock file for read-modify-write

The files are meant to be read and edited by people too: a ``.py`` file dropped
into ``workflows/`` is a workflow, ``requirements.txt`` keeps hand-written comments.

Why it is built the way it is:

* Every write goes to a temp file in the same directory, is fsynced and then
  ``os.replace``-d over the target, so readers never see half a file and a failed
  write leaves the previous content intact. The folder is fsynced after a rename
  that creates a name; replacing an artifact or workflow skips that third fsync
  (see :func:`_replace_paired`).
* Read-modify-write sequences (the artifact index, ``requirements.txt``, the
  vector cache, a workflow and its sidecar) run under an exclusive ``flock`` on one
  lock file, so several processes can share a base path without losing updates.
  Loading an artifact takes the lock shared, so the index entry and the payload it
  reads belong to the same save.
* A save must not cost more in a large library than in a small one, so once the
  index outgrows ``_INDEX_REWRITE_BYTES`` a save appends one line to
  ``.index.log`` instead of rewriting ``.index.json``; the log is folded back into
  ``.index.json`` when it has grown as large as it (a whole rewrite every N saves,
  constant on average). Each process keeps the index in memory and reads only the
  log lines appended since it last looked.
* Parsing 1,000 workflow files on every ``list`` would be slow, so analysed records
  are cached per file, keyed by inode, size, mtime and ctime. Like git's "racy
  clean" rule, a file modified within the last two seconds is never served from the
  cache: coarse file-system timestamps could otherwise hide a same-size rewrite.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import stat
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from py_code_mode._private import storage_rules
from py_code_mode._private.artifact_codec import (
    decode_artifact,
    encode_artifact,
    json_bytes,
    not_found,
)
from py_code_mode._private.names import validate_workflow_name
from py_code_mode._private.requirements import dependency_name
from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    DependencyError,
    InvalidNameError,
    QuotaExceededError,
    StorageError,
    WorkflowError,
)
from py_code_mode.models import ArtifactInfo, WorkflowRecord
from py_code_mode.storage.protocol import ArtifactValue

if TYPE_CHECKING:
    from py_code_mode.quotas import Quotas

__all__ = ["DEFAULT_MAX_ARTIFACT_BYTES", "FileStorage"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_ARTIFACT_BYTES: Final = 100 * 1024 * 1024
"""Largest artifact payload accepted by default (100 MiB)."""

_LOCK_TIMEOUT: Final = 30.0
_RACY_NS: Final = 2_000_000_000
_INDEX_VERSION: Final = 1
_INDEX_REWRITE_BYTES: Final = 64 * 1024
"""Below this size the artifact index is rewritten whole on each save (no log)."""
_VECTOR_MAGIC: Final = b"PCMVEC1\n"
_INLINE_COMMENT = re.compile(r"\s+#.*$")
_UNSAFE_DIR_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SEPARATORS: Final = frozenset("/\\\0")

_T = TypeVar("_T")
_StatKey = tuple[int, int, int, int]


class _InvalidWorkflowFileError(StorageError):
    """A file in ``workflows/`` that cannot be served as a workflow."""


class FileStorage:
    """A :class:`~py_code_mode.storage.protocol.StorageBackend` on a local directory.

    Invalid hand-written workflow files (syntax error, no ``run``, not UTF-8, a
    symlink leading outside ``workflows/``) are skipped by :meth:`list_workflows`
    with one logged warning per version of the file; :meth:`get_workflow` raises
    :class:`~py_code_mode.errors.StorageError` naming the file and the problem,
    because answering ``None`` would hide a file the user can see. Saving or deleting
    the workflow repairs it.

    The artifact index is authoritative: files placed in ``artifacts/`` by hand are
    not artifacts until saved through the API.

    The backend needs no connection, so every method also works before :meth:`open`
    and after :meth:`close`; :meth:`open` just creates the directories up front.

    Args:
        base_path: Directory holding the library; created when missing.
        max_artifact_bytes: Largest payload :meth:`save_artifact` accepts.

    Raises:
        ConfigError: ``max_artifact_bytes`` is not a positive integer.
    """

    def __init__(
        self,
        base_path: Path | str,
        *,
        max_artifact_bytes: int = DEFAULT_MAX_ARTIFACT_BYTES,
    ) -> None:
        if (
            isinstance(max_artifact_bytes, bool)
            or not isinstance(max_artifact_bytes, int)
            or max_artifact_bytes <= 0
        ):
            raise ConfigError(
                f"max_artifact_bytes must be a positive integer, got {max_artifact_bytes!r}"
            )
        self._base = Path(os.path.abspath(os.path.expanduser(os.fspath(base_path))))
        self._max_artifact_bytes = max_artifact_bytes
        self._workflows = self._base / "workflows"
        self._meta = self._workflows / ".meta"
        self._artifacts = self._base / "artifacts"
        self._index = self._artifacts / ".index.json"
        self._index_log = self._artifacts / ".index.log"
        self._requirements = self._base / "requirements.txt"
        self._embeddings = self._base / ".cache" / "embeddings"
        self._lock_path = self._base / ".lock"
        # name -> (py key, sidecar key, record or the reason the file is invalid)
        self._wf_cache: dict[str, tuple[_StatKey, _StatKey | None, WorkflowRecord | str]] = {}
        self._index_state: _IndexState | None = None
        self._index_mutex = threading.Lock()  # storage calls run on several threads
        self._vector_cache: dict[Path, tuple[_StatKey, dict[str, array.array[float]]]] = {}
        self._warned: set[tuple[str, _StatKey]] = set()
        self.workflow_problems: dict[str, str] = {}
        """Workflow files the last listing skipped, by name, with why."""

    @property
    def base_path(self) -> Path:
        """Absolute directory that holds the library."""
        return self._base

    @property
    def max_artifact_bytes(self) -> int:
        """Largest artifact payload accepted, in bytes."""
        return self._max_artifact_bytes

    def __repr__(self) -> str:
        return f"FileStorage(base_path={str(self._base)!r})"

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        """Create the directory layout. Idempotent."""
        await self._run(self._open_sync, "create the storage directories", self._base)

    async def close(self) -> None:
        """Drop in-memory caches. Idempotent; there is nothing else to release."""
        self._wf_cache.clear()
        self._index_state = None
        self._vector_cache.clear()

    def _open_sync(self) -> None:
        if self._base.exists() and not self._base.is_dir():
            raise StorageError(f"FileStorage base path {self._base} exists and is not a directory")
        for folder in (self._meta, self._artifacts, self._embeddings):
            folder.mkdir(parents=True, exist_ok=True)

    # -- workflows -------------------------------------------------------------------

    async def list_workflows(self) -> list[WorkflowRecord]:
        """All valid workflows, sorted by name; invalid files are skipped and logged."""
        return await self._run(self._list_workflows_sync, "list workflows", self._workflows)

    async def get_workflow(self, name: str) -> WorkflowRecord | None:
        """One workflow, or ``None`` when no file exists for it.

        Raises:
            InvalidNameError: ``name`` is not a plain file name.
            StorageError: The file exists but is not a valid workflow.
        """
        path = self._workflow_path(name)
        return await self._run(self._get_workflow_sync, f"read workflow {name!r}", path, name)

    async def save_workflow(self, record: WorkflowRecord, *, quotas: Quotas | None = None) -> None:
        """Write the source and its sidecar; an existing workflow keeps its ``created_at``.

        The description goes to the sidecar only when it differs from what the
        docstring gives, so a docstring edited by hand later still shows.

        Raises:
            InvalidNameError: The record's name is not a plain file name.
            WorkflowError: The source is invalid or the metadata is not JSON data.
            WorkflowQuotaError: A new workflow would exceed ``quotas.max_workflows``
                (counted under the lock, so concurrent writers cannot both pass).
        """
        path = self._workflow_path(record.name)
        await self._run(
            self._save_workflow_sync, f"save workflow {record.name!r}", path, record, quotas
        )

    async def delete_workflow(self, name: str) -> bool:
        """Remove the source and sidecar; ``False`` when no source file existed."""
        path = self._workflow_path(name)
        return await self._run(self._delete_workflow_sync, f"delete workflow {name!r}", path, name)

    def _workflow_path(self, name: str) -> Path:
        # Storage safety, not a naming rule (those are the command layer's): one plain
        # file directly in workflows/, whatever a direct caller passes.
        if not isinstance(name, str) or not name or name.startswith(".") or _SEPARATORS & set(name):
            raise InvalidNameError(f"workflow name {name!r} is not a plain file name")
        return self._workflows / f"{name}.py"

    def _sidecar_path(self, name: str) -> Path:
        return self._meta / f"{name}.json"

    def _list_workflows_sync(self) -> list[WorkflowRecord]:
        try:
            entries = list(os.scandir(self._workflows))
        except FileNotFoundError:
            return []
        sidecars: dict[str, os.stat_result] = {}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for meta in os.scandir(self._meta):
                if meta.name.endswith(".json") and meta.is_file():
                    sidecars[meta.name[:-5]] = meta.stat()
        records: list[WorkflowRecord] = []
        problems: dict[str, str] = {}
        for entry in entries:
            if not entry.name.endswith(".py") or entry.name.startswith("."):
                continue
            name = entry.name[:-3]
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # deleted while listing, or a dangling symlink
            except OSError as exc:
                logger.warning("skipping workflow file %s: %s", entry.path, exc)
                continue
            if not _is_regular(st):
                continue
            try:
                validate_workflow_name(name)
            except InvalidNameError as exc:
                # Helper modules (_util.py, __init__.py) are expected; others are mistakes.
                if not name.startswith("_"):
                    self._warn_once(name, st, f"ignoring {entry.path}: {exc}")
                continue
            try:
                record = self._workflow_from_file(
                    name, Path(entry.path), st, sidecars.get(name), entry.is_symlink()
                )
            except _InvalidWorkflowFileError as exc:
                self._warn_once(name, st, f"skipping workflow file: {exc}")
                problems[name] = str(exc)
                continue
            records.append(record)
        records.sort(key=lambda r: r.name)
        self.workflow_problems = problems
        return records

    def _warn_once(self, name: str, st: os.stat_result, message: str) -> None:
        """Log a problem with a file once per version of it, not on every list."""
        key = (name, _stat_key(st))
        if key not in self._warned:
            self._warned.add(key)
            logger.warning("%s", message)

    def _get_workflow_sync(self, name: str) -> WorkflowRecord | None:
        path = self._workflow_path(name)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not _is_regular(st):
            return None
        try:
            meta_st: os.stat_result | None = self._sidecar_path(name).stat()
        except (FileNotFoundError, NotADirectoryError):
            meta_st = None
        try:
            return self._workflow_from_file(name, path, st, meta_st, path.is_symlink())
        except _InvalidWorkflowFileError as exc:
            # The public class: agent code gets errors by class name, and knows StorageError.
            raise StorageError(str(exc)) from None

    def _workflow_from_file(
        self,
        name: str,
        path: Path,
        st: os.stat_result,
        meta_st: os.stat_result | None,
        is_symlink: bool,
    ) -> WorkflowRecord:
        if is_symlink and not _inside(path, self._workflows):
            raise _InvalidWorkflowFileError(
                f"workflow file {path} is a symlink to {os.path.realpath(path)}, outside "
                f"{self._workflows}; copy the file into the folder instead"
            )
        key = _stat_key(st)
        meta_key = _stat_key(meta_st) if meta_st is not None else None
        cached = self._wf_cache.get(name)
        if cached is not None and cached[0] == key and cached[1] == meta_key:
            if isinstance(cached[2], str):
                raise _InvalidWorkflowFileError(cached[2])
            return cached[2]
        cacheable = _settled(st) and (meta_st is None or _settled(meta_st))
        try:
            result: WorkflowRecord | str = self._analyze_file(name, path, st, meta_st)
        except _InvalidWorkflowFileError as exc:
            result = str(exc)
        if cacheable:
            self._wf_cache[name] = (key, meta_key, result)
        else:
            self._wf_cache.pop(name, None)
        if isinstance(result, str):
            raise _InvalidWorkflowFileError(result)
        return result

    def _analyze_file(
        self, name: str, path: Path, st: os.stat_result, meta_st: os.stat_result | None
    ) -> WorkflowRecord:
        raw = path.read_bytes()
        try:
            source = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _InvalidWorkflowFileError(
                f"workflow file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None
        sidecar = self._read_sidecar(name) if meta_st is not None else None
        if sidecar is None:
            created = updated = st.st_mtime
            description = ""
            metadata: dict[str, Any] = {}
        else:
            created = sidecar["created_at"]
            updated = sidecar["updated_at"]
            if sidecar["sha256"] != hashlib.sha256(raw).hexdigest():
                updated = max(updated, st.st_mtime)  # edited by hand since the last save
            description = sidecar["description"]
            metadata = sidecar["metadata"]
        try:
            return analyze_workflow(
                name,
                source,
                description,
                metadata=metadata,
                created_at=created,
                updated_at=updated,
            )
        except WorkflowError as exc:
            raise _InvalidWorkflowFileError(f"workflow file {path} is invalid: {exc}") from None

    def _read_sidecar(self, name: str) -> dict[str, Any] | None:
        path = self._sidecar_path(name)
        try:
            data = json.loads(path.read_bytes())
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")  # noqa: TRY301
            metadata = data.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise TypeError("metadata is not an object")  # noqa: TRY301
            return {
                "description": str(data.get("description") or ""),
                "metadata": metadata,
                "created_at": float(data["created_at"]),
                "updated_at": float(data["updated_at"]),
                "sha256": str(data.get("sha256") or ""),
            }
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("ignoring unreadable workflow sidecar %s: %s", path, exc)
            return None

    def _save_workflow_sync(self, record: WorkflowRecord, quotas: Quotas | None) -> None:
        name = record.name
        derived = analyze_workflow(name, record.source)
        description = record.description.strip()
        explicit = description if description != derived.description else ""
        metadata = storage_rules.workflow_metadata(record)
        payload = storage_rules.workflow_source_bytes(name, record.source)
        path = self._workflow_path(name)
        with self._locked(exclusive=True):
            if quotas is not None and not path.exists():
                count = sum(1 for p in self._workflows.glob("*.py") if not p.name.startswith("."))
                quotas.check("max_workflows", count + 1, "the workflow library", "workflows")
            self._meta.mkdir(parents=True, exist_ok=True)
            previous = self._read_sidecar(name)
            now = time.time()
            if previous is not None and path.exists():
                created = previous["created_at"]
            elif path.exists():
                created = path.stat().st_mtime
            else:
                created = record.created_at or now
            sidecar = {
                "name": name,
                "description": explicit,
                "metadata": metadata,
                "created_at": created,
                "updated_at": record.updated_at or now,
                "sha256": hashlib.sha256(payload).hexdigest(),
            }
            sidecar_path = self._sidecar_path(name)
            old_sidecar = _read_or_none(sidecar_path)
            _replace_paired(
                path,
                payload,
                write_companion=lambda: _atomic_write(sidecar_path, _dump_json(sidecar)),
                restore_companion=lambda: _restore(sidecar_path, old_sidecar),
            )
        self._wf_cache.pop(name, None)

    def _delete_workflow_sync(self, name: str) -> bool:
        path = self._workflow_path(name)
        with self._locked(exclusive=True):
            try:
                path.unlink()
                existed = True
            except (FileNotFoundError, NotADirectoryError):
                existed = False
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                self._sidecar_path(name).unlink()
        self._wf_cache.pop(name, None)
        return existed

    # -- artifacts -------------------------------------------------------------------

    async def list_artifacts(self) -> list[ArtifactInfo]:
        """Index entries of all artifacts, sorted by name."""
        index = await self._run(self._read_index, "read the artifact index", self._index)
        return [index[name] for name in sorted(index)]

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

        Raises:
            InvalidNameError: ``name`` is not a relative path of plain file names.
            ArtifactError: ``data`` is of an unsupported type, larger than
                ``max_artifact_bytes``, or ``name`` clashes with a folder of artifacts
                or resolves outside ``artifacts/`` through a symlink.
            ArtifactQuotaError: Over a quota of ``quotas``; totals come from the
                index, read under the same lock as the write.
        """
        meta = dict(metadata or {})
        return await self._run(
            self._save_artifact_sync,
            f"save artifact {name!r}",
            self._artifacts,
            name,
            data,
            description,
            meta,
            quotas,
        )

    async def load_artifact(self, name: str) -> ArtifactValue:
        """The stored value, of the type it was saved with.

        Raises:
            InvalidNameError: ``name`` is not a relative path of plain file names.
            ArtifactNotFoundError: No artifact has this name.
            ArtifactError: The payload was changed by hand and no longer decodes,
                or it resolves outside ``artifacts/`` through a symlink.
        """
        self._artifact_path(name)
        return await self._run(
            self._load_artifact_sync, f"load artifact {name!r}", self._artifacts, name
        )

    async def get_artifact_info(self, name: str) -> ArtifactInfo | None:
        """Index entry of one artifact, or ``None`` when absent."""
        self._artifact_path(name)
        return await self._run(
            self._artifact_info_sync, "read the artifact index", self._index, name
        )

    async def delete_artifact(self, name: str) -> bool:
        """Remove an artifact and its index entry; ``False`` when neither existed."""
        self._artifact_path(name)
        return await self._run(
            self._delete_artifact_sync, f"delete artifact {name!r}", self._artifacts, name
        )

    def _artifact_path(self, name: str) -> Path:
        # Storage safety: one name is one file under artifacts/, never outside it and
        # never one of the store's own dot files (.index.json, .index.log, .tmp-*).
        segments = name.split("/") if isinstance(name, str) else [""]
        if any(not part or part.startswith(".") or "\0" in part for part in segments):
            raise InvalidNameError(
                f"artifact name {name!r} must be a relative path of plain file names"
            )
        path = self._artifacts.joinpath(*segments)
        if not _inside(path, self._artifacts):
            raise ArtifactError(
                f"artifact {name!r} resolves to {os.path.realpath(path)}, outside the "
                f"artifact store {os.path.realpath(self._artifacts)}: a symlink under "
                f"{self._artifacts} points elsewhere; remove it or pick another name"
            )
        return path

    def _read_index(self) -> dict[str, ArtifactInfo]:
        """A copy of the whole index (for listings)."""
        with self._locked(exclusive=False), self._index_mutex:
            return dict(self._current_index())

    def _artifact_info_sync(self, name: str) -> ArtifactInfo | None:
        with self._locked(exclusive=False), self._index_mutex:
            return self._current_index().get(name)

    def _current_index(self) -> _SizedIndex:
        """The index as of now: cached snapshot plus the log lines not yet applied.

        Callers hold the storage lock (so no compaction runs meanwhile) and
        ``_index_mutex``; the returned dict is the cache itself, not a copy.
        """
        snapshot = _stat_or_none(self._index)
        log = _stat_or_none(self._index_log)
        snapshot_key = _stat_key(snapshot) if snapshot is not None else None
        log_id = (log.st_dev, log.st_ino) if log is not None else None
        state = self._index_state
        if (
            state is None
            or state.snapshot_key != snapshot_key
            or state.log_id != log_id
            or (log is not None and log.st_size < state.log_offset)
            # a snapshot someone else wrote in the last two seconds may hide a change
            or (snapshot is not None and not state.trusted and not _settled(snapshot))
        ):
            entries = self._read_snapshot() if snapshot is not None else {}
            trusted = snapshot is None or _settled(snapshot)
            state = _IndexState(snapshot_key, log_id, 0, _SizedIndex(entries), trusted)
            self._index_state = state
        if log is not None and log.st_size > state.log_offset:
            state.log_offset = self._replay_log(state.entries, state.log_offset)
        return state.entries

    def _read_snapshot(self) -> dict[str, ArtifactInfo]:
        raw = self._index.read_bytes()
        try:
            doc = json.loads(raw)
            entries = doc["artifacts"]
            if not isinstance(entries, dict):
                raise TypeError("'artifacts' is not an object")  # noqa: TRY301
        except (ValueError, TypeError, KeyError) as exc:
            raise StorageError(
                f"artifact index {self._index} is corrupt ({exc}); restore it from a "
                "backup or delete it (the artifact files stay, but lose their index entries)"
            ) from exc
        index: dict[str, ArtifactInfo] = {}
        for name, entry in entries.items():
            try:
                index[name] = storage_rules.artifact_info_from_entry(entry, name=name)
            except storage_rules.BadEntryError as exc:
                logger.warning("ignoring bad entry %r in %s: it %s", name, self._index, exc)
        return index

    def _replay_log(self, entries: dict[str, ArtifactInfo], offset: int) -> int:
        """Apply the complete log lines from ``offset``; return the offset after them."""
        try:
            with open(self._index_log, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return offset
        end = data.rfind(b"\n") + 1  # a last line without newline is still being written
        for line in data[:end].splitlines():
            try:
                change = json.loads(line)
                name = change["name"]
                if "entry" in change:
                    entries[name] = storage_rules.artifact_info_from_entry(
                        change["entry"], name=name
                    )
                else:
                    entries.pop(name, None)
            except (ValueError, TypeError, KeyError) as exc:
                # BadEntryError is a ValueError
                logger.warning("ignoring bad line in %s: %s", self._index_log, exc)
        return offset + end

    def _record_change(self, name: str, info: ArtifactInfo | None) -> None:
        """Make the index say ``name`` is ``info`` (None: absent), durably.

        Small indexes are rewritten whole; large ones get one appended log line
        (and are compacted when the log has grown as large as the index). Callers
        hold the exclusive storage lock and ``_index_mutex``, with the state current.
        """
        state = self._index_state
        assert state is not None
        if info is None:
            state.entries.pop(name, None)
        else:
            state.entries[name] = info
        snapshot_size = 0 if state.snapshot_key is None else state.snapshot_key[1]
        if state.log_id is None and snapshot_size < _INDEX_REWRITE_BYTES:
            self._write_index(state.entries)
            return
        change: dict[str, Any] = {"name": name}
        if info is not None:
            entry = _entry_of(info)
            change["entry"] = entry
        line = json.dumps(change, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        log = _append_line(self._index_log, line.encode("utf-8", "surrogatepass"))
        state.log_offset = log.st_size
        state.log_id = (log.st_dev, log.st_ino)
        if state.log_offset >= max(snapshot_size, _INDEX_REWRITE_BYTES):
            self._write_index(state.entries)

    def _write_index(self, index: Mapping[str, ArtifactInfo]) -> None:
        """Rewrite ``.index.json`` whole, drop the log, and cache what was written."""
        entries = {name: _entry_of(index[name]) for name in sorted(index)}
        _atomic_write(
            self._index,
            _dump_json({"version": _INDEX_VERSION, "artifacts": entries}),
            # Replacing the index changes no name; creating it does, and the payload's
            # rename that follows syncs the folder only when it creates a name too.
            sync_dir=not os.path.lexists(self._index),
        )
        # A crash before this unlink only leaves lines the snapshot already holds.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._index_log)
        snapshot = os.stat(self._index)
        self._index_state = _IndexState(_stat_key(snapshot), None, 0, _SizedIndex(index), True)

    def _save_artifact_sync(
        self,
        name: str,
        data: object,
        description: str,
        metadata: dict[str, Any],
        quotas: Quotas | None = None,
    ) -> ArtifactInfo:
        kind, payload = encode_artifact(
            name, data, self._max_artifact_bytes, limit_name="max_artifact_bytes"
        )
        if quotas is not None:
            quotas.check("max_artifact_bytes", len(payload), f"artifact {name!r}", "artifacts")
        json_bytes(metadata, f"metadata of artifact {name!r}", ArtifactError)
        path = self._artifact_path(name)
        with self._locked(exclusive=True):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise ArtifactError(
                    f"artifact {name!r} cannot be saved: a part of its path is already an "
                    "artifact, and one name cannot be both an artifact and a folder"
                ) from None
            path = self._artifact_path(name)  # again: the folders exist now
            if path.is_dir():
                raise ArtifactError(
                    f"artifact {name!r} cannot be saved: it is a folder holding other "
                    f"artifacts (e.g. '{name}/...'); pick another name"
                )
            with self._index_mutex:
                try:
                    index = self._current_index()
                    previous = index.get(name)
                    if quotas is not None:
                        _check_totals(quotas, index, previous, len(payload))
                    now = time.time()
                    info = ArtifactInfo(
                        name=name,
                        kind=kind,
                        description=description,
                        metadata=metadata,
                        size=len(payload),
                        created_at=previous.created_at if previous else now,
                        updated_at=now,
                    )
                    _replace_paired(
                        path,
                        payload,
                        write_companion=lambda: self._record_change(name, info),
                        restore_companion=lambda: self._record_change(name, previous),
                        also_sync=self._artifacts,
                    )
                except QuotaExceededError:
                    raise  # refused before anything was written: the state is still current
                except BaseException:
                    self._index_state = None  # read it from disk again: it may be anything now
                    raise
        return info

    def _load_artifact_sync(self, name: str) -> ArtifactValue:
        if not self._index.exists() and not self._index_log.exists():
            raise not_found(name)
        with self._locked(exclusive=False):
            with self._index_mutex:
                info = self._current_index().get(name)
            if info is None:
                raise not_found(name)
            path = self._artifact_path(name)
            try:
                payload = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise ArtifactNotFoundError(
                    f"artifact {name!r} is in the index but its file {path} is gone "
                    "(removed by hand?); delete it or save it again"
                ) from None
        return decode_artifact(name, info.kind, payload, where=f"file {path}")

    def _delete_artifact_sync(self, name: str) -> bool:
        path = self._artifact_path(name)
        with self._locked(exclusive=True):
            with self._index_mutex:
                in_index = name in self._current_index()
            had_file = path.is_file() or path.is_symlink()
            if had_file:
                path.unlink()
            if in_index:
                with self._index_mutex:
                    try:
                        self._current_index()
                        self._record_change(name, None)
                    except BaseException:
                        self._index_state = None
                        raise
                _fsync_dir(self._artifacts)
            self._prune_empty_folders(path.parent)
        return in_index or had_file

    def _prune_empty_folders(self, folder: Path) -> None:
        while folder != self._artifacts and self._artifacts in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # -- deps ------------------------------------------------------------------------

    async def list_deps(self) -> list[str]:
        """Specs in ``requirements.txt`` in file order, without comments or blank lines."""
        lines = await self._run(self._read_requirements, "read the deps list", self._requirements)
        return [spec for spec in map(_spec_of_line, lines) if spec]

    async def add_dep(self, spec: str) -> None:
        """Add ``spec``, replacing (in place) any entry for the same distribution.

        Policy (no URLs, no installer options) is the caller's check, as the Protocol
        says; here ``spec`` only has to be one requirement on one line so that the
        file stays a valid requirements file. It is stored as given, stripped.
        Comments, blank lines and lines that are not plain requirements are kept.

        Raises:
            DependencyError: ``spec`` is not a single-line requirement.
        """
        text, target = storage_rules.dep_spec(spec)
        await self._run(
            self._add_dep_sync, "update the deps list", self._requirements, text, target
        )

    async def remove_dep(self, name: str) -> bool:
        """Remove every entry for distribution ``name`` (a name or a spec).

        Raises:
            DependencyError: ``name`` is neither a package name nor a requirement.
        """
        target = storage_rules.dep_target(name)
        return await self._run(
            self._remove_dep_sync, "update the deps list", self._requirements, target
        )

    def _read_requirements(self) -> list[str]:
        try:
            raw = self._requirements.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return raw.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise StorageError(
                f"{self._requirements} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc

    def _write_requirements(self, lines: Sequence[str]) -> None:
        text = "".join(f"{line}\n" for line in lines)
        _atomic_write(self._requirements, text.encode("utf-8"))

    def _add_dep_sync(self, spec: str, target: str) -> None:
        with self._locked(exclusive=True):
            lines: list[str] = []
            replaced = False
            for line in self._read_requirements():
                if _line_dependency(line) == target:
                    if not replaced:
                        lines.append(spec)
                        replaced = True
                    continue
                lines.append(line)
            if not replaced:
                lines.append(spec)
            self._write_requirements(lines)

    def _remove_dep_sync(self, target: str) -> bool:
        with self._locked(exclusive=True):
            lines = self._read_requirements()
            kept = [line for line in lines if _line_dependency(line) != target]
            if len(kept) == len(lines):
                return False
            self._write_requirements(kept)
            return True

    # -- embedding cache -------------------------------------------------------------

    async def get_vectors(self, model_id: str, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached vectors of ``model_id`` for ``keys``; missing keys are left out."""
        path = self._vector_path(model_id)
        storage_rules.check_vector_keys(keys)
        wanted = list(keys)
        return await self._run(
            self._get_vectors_sync, "read the embedding cache", path, path, wanted
        )

    async def put_vectors(self, model_id: str, vectors: Mapping[str, Sequence[float]]) -> None:
        """Add or replace cached vectors of ``model_id``.

        Raises:
            StorageError: A key is not a string or a vector holds non-numbers.
        """
        path = self._vector_path(model_id)
        # array("d", ...) refuses str items, which float() would parse.
        clean = storage_rules.convert_vectors(vectors, lambda vector: array.array("d", vector))
        if clean:
            await self._run(self._put_vectors_sync, "write the embedding cache", path, path, clean)

    def _vector_path(self, model_id: str) -> Path:
        storage_rules.check_model_id(model_id)
        slug = _UNSAFE_DIR_CHARS.sub("_", model_id).strip("._")[:80] or "model"
        digest = hashlib.sha256(model_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return self._embeddings / f"{slug}-{digest}" / "vectors.bin"

    def _read_vectors(self, path: Path) -> dict[str, array.array[float]]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        key = _stat_key(st)
        cached = self._vector_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            vectors = _unpack_vectors(path.read_bytes())
        except (ValueError, TypeError, KeyError, struct.error) as exc:
            logger.warning(
                "ignoring corrupt embedding cache %s (%s); it will be rebuilt", path, exc
            )
            return {}
        if _settled(st):
            self._vector_cache[path] = (key, vectors)
        return vectors

    def _get_vectors_sync(self, path: Path, keys: list[str]) -> dict[str, list[float]]:
        stored = self._read_vectors(path)
        return {key: stored[key].tolist() for key in keys if key in stored}

    def _put_vectors_sync(self, path: Path, vectors: dict[str, array.array[float]]) -> None:
        with self._locked(exclusive=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            merged = dict(self._read_vectors(path))
            merged.update(vectors)
            _atomic_write(path, _pack_vectors(merged))
        self._vector_cache.pop(path, None)

    # -- plumbing --------------------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], what: str, path: Path | str, *args: Any) -> _T:
        """Run ``fn`` in a worker thread, translating OS errors into StorageError."""
        try:
            return await asyncio.to_thread(fn, *args)
        except OSError as exc:
            where = exc.filename if exc.filename is not None else path
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise StorageError(f"FileStorage could not {what}: {where}: {reason}") from exc

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold ``flock`` on the lock file; bounded wait so a stuck peer is reported.

        A shared (reading) lock is skipped when the lock file cannot be created, so
        a library on read-only media can still be read.
        """
        fd: int | None = None
        try:
            if exclusive:
                self._base.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError:
            if exclusive:
                raise
            logger.debug("reading %s without a lock: lock file unavailable", self._base)
        if fd is None:
            yield
            return
        try:
            operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            deadline = time.monotonic() + _LOCK_TIMEOUT
            pause = 0.001
            while True:
                try:
                    fcntl.flock(fd, operation | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StorageError(
                            f"timed out after {_LOCK_TIMEOUT:.0f}s waiting for the lock "
                            f"{self._lock_path}; another process holds it"
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.05)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


# -- helpers -------------------------------------------------------------------------


def _check_totals(
    quotas: Quotas, index: _SizedIndex, previous: ArtifactInfo | None, size: int
) -> None:
    if previous is None:
        quotas.check("max_artifacts", len(index) + 1, "the artifact store", "artifacts")
    total = index.total_bytes
    new_total = total - (previous.size if previous else 0) + size
    if new_total > total:  # shrinking or same-size replacements always pass
        quotas.check("max_total_artifact_bytes", new_total, "the artifact store", "artifacts")


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _settled(st: os.stat_result) -> bool:
    """True when the file was last modified long enough ago to trust a stat-keyed cache."""
    return st.st_mtime_ns < time.time_ns() - _RACY_NS


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _inside(path: Path, root: Path) -> bool:
    """True when ``path``, with every symlink resolved, lies within ``root`` (resolved)."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root + os.sep)


def _atomic_write(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, whole.

    ``sync_dir=False`` leaves the folder's fsync to a rename that follows in it.
    """
    _commit(_write_temp(path, data), path, sync_dir=sync_dir)


def _append_line(path: Path, line: bytes) -> os.stat_result:
    """Append one line durably; return the file's stat after it.

    A line left unfinished by a crash is closed first, so it stays one bad line
    (skipped when read) instead of spoiling this one.
    """
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        size = os.fstat(fd).st_size
        created = size == 0
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        data = memoryview(line + b"\n")
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
        end = os.fstat(fd)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
    return end


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _entry_of(info: ArtifactInfo) -> dict[str, Any]:
    """The index entry of ``info``: its fields but the name (the entry's key)."""
    return {
        "kind": info.kind,
        "description": info.description,
        "metadata": info.metadata,
        "size": info.size,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }


class _SizedIndex(dict[str, ArtifactInfo]):
    """The artifact index with a running total of payload sizes, for quotas.

    Every change of the cached index goes through ``[name] = info`` or ``pop``, so
    the total stays exact without summing all entries on each save.
    """

    def __init__(self, entries: Mapping[str, ArtifactInfo] | None = None) -> None:
        super().__init__(entries or {})
        self.total_bytes = sum(info.size for info in self.values())

    def __setitem__(self, name: str, info: ArtifactInfo) -> None:
        old = self.get(name)
        super().__setitem__(name, info)
        self.total_bytes += info.size - (old.size if old is not None else 0)

    def __delitem__(self, name: str) -> None:
        self.total_bytes -= self[name].size
        super().__delitem__(name)

    def pop(self, name: str, *default: Any) -> Any:
        if name in self:
            self.total_bytes -= self[name].size
        return super().pop(name, *default)


@dataclass(slots=True)
class _IndexState:
    """One process's view of the artifact index and how far it has read the log."""

    snapshot_key: _StatKey | None
    log_id: tuple[int, int] | None
    log_offset: int
    entries: _SizedIndex
    trusted: bool
    """False for a snapshot another process wrote under two seconds ago."""


def _write_temp(path: Path, data: bytes) -> Path:
    """Write ``data`` durably to a new temp file next to ``path``; :func:`_commit` it."""
    tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = os.fspath(path)  # write/fsync errors carry no path
        raise
    return tmp


def _replace_paired(
    path: Path,
    payload: bytes,
    *,
    write_companion: Callable[[], None],
    restore_companion: Callable[[], None],
    also_sync: Path | None = None,
) -> None:
    """Replace ``path`` and the file that describes it (sidecar, index) as one pair.

    The payload goes into a temp file, then the companion is written, then the temp
    file is renamed over ``path``: a failure at any step leaves the previous pair in
    place, because a failed rename puts the old companion back.

    The folders are fsynced only when ``path`` is a new name. Replacing an existing
    file changes no name, and both files were fsynced before their renames, so a
    crash still leaves whole files (the old pair or the new one); only the newest
    replacement may be lost until the file system's next journal commit. A new
    name must be synced, or a crash could keep its index entry and lose the file.
    """
    tmp = _write_temp(path, payload)
    try:
        write_companion()
    except BaseException:
        _discard(tmp)
        raise
    new_name = not os.path.lexists(path)
    try:
        _commit(tmp, path, sync_dir=new_name)
    except BaseException:
        with contextlib.suppress(OSError):
            restore_companion()
        raise
    if new_name and also_sync is not None and also_sync != path.parent:
        _fsync_dir(also_sync)


def _restore(path: Path, previous: bytes | None) -> None:
    """Put back what :func:`_read_or_none` read from ``path`` (``None``: no file)."""
    if previous is None:
        path.unlink()
    else:
        _atomic_write(path, previous)


def _commit(tmp: Path, path: Path, *, sync_dir: bool = True) -> None:
    """Rename a temp file from :func:`_write_temp` over ``path``."""
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if sync_dir:
        _fsync_dir(path.parent)


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; some file systems cannot fsync a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _dump_json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=1, allow_nan=False).encode(
        "utf-8", "surrogatepass"
    )


def _spec_of_line(line: str) -> str:
    text = line.strip()
    if not text or text.startswith("#"):
        return ""
    return _INLINE_COMMENT.sub("", text).strip()


def _line_dependency(line: str) -> str | None:
    """Canonical name a requirements line is about; ``None`` for comments and options."""
    spec = _spec_of_line(line)
    if not spec:
        return None
    try:
        return dependency_name(spec)
    except DependencyError:
        return None


def _pack_vectors(vectors: Mapping[str, array.array[float]]) -> bytes:
    """Header (JSON: keys and lengths) then all values as little-endian doubles."""
    keys = sorted(vectors)
    header = json.dumps({"entries": [[k, len(vectors[k])] for k in keys]}).encode()
    values = array.array("d")
    for k in keys:
        values.extend(vectors[k])
    if sys.byteorder != "little":
        values.byteswap()
    return b"".join((_VECTOR_MAGIC, struct.pack("<I", len(header)), header, values.tobytes()))


def _unpack_vectors(raw: bytes) -> dict[str, array.array[float]]:
    """Inverse of :func:`_pack_vectors`; ``ValueError`` for anything malformed."""
    if not raw.startswith(_VECTOR_MAGIC) or len(raw) < len(_VECTOR_MAGIC) + 4:
        raise ValueError("not a vector cache file")
    start = len(_VECTOR_MAGIC) + 4
    (header_len,) = struct.unpack("<I", raw[len(_VECTOR_MAGIC) : start])
    try:
        entries = json.loads(raw[start : start + header_len])["entries"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"bad header: {exc}") from None
    body = raw[start + header_len :]
    if len(body) % 8:
        raise ValueError("truncated values")
    values = array.array("d")
    values.frombytes(body)
    if sys.byteorder != "little":
        values.byteswap()
    if sum(int(n) for _, n in entries) != len(values):
        raise ValueError("header does not match the stored values")
    out: dict[str, array.array[float]] = {}
    offset = 0
    for key, length in entries:
        out[str(key)] = values[offset : offset + int(length)]
        offset += int(length)
    return out
