"""What every storage backend accepts, and how artifact index entries are read back.

FileStorage and RedisStorage keep their data in different shapes, but the rules
must not differ: a library moved from one backend to the other (or an agent that
switches) has to see the same arguments refused with the same messages and the
same index entries accepted. Each rule is therefore written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from py_code_mode._private.artifact_codec import json_bytes
from py_code_mode._private.names import validate_artifact_name
from py_code_mode._private.requirements import dependency_name
from py_code_mode.errors import DependencyError, StorageError, WorkflowError
from py_code_mode.models import ArtifactInfo, WorkflowRecord

__all__ = [
    "ARTIFACT_KINDS",
    "BadEntryError",
    "artifact_info_from_entry",
    "check_model_id",
    "check_vector_keys",
    "convert_vectors",
    "dep_spec",
    "dep_target",
    "workflow_metadata",
    "workflow_source_bytes",
]

ARTIFACT_KINDS: Final = frozenset({"str", "bytes", "json"})
"""Kinds an index entry may record; anything else was not written by py-code-mode."""

_V = TypeVar("_V")


class BadEntryError(ValueError):
    """A stored artifact index entry that cannot be read.

    The message completes a sentence about the entry ("... has unknown kind
    'pickle'"), so each backend can name the entry its own way.
    """


# -- artifacts -----------------------------------------------------------------------


def artifact_info_from_entry(
    entry: object, *, name: str | None = None, created_at: float | None = None
) -> ArtifactInfo:
    """Read a stored index entry back into an :class:`ArtifactInfo`.

    Args:
        entry: The decoded JSON document of the entry.
        name: The artifact name when the backend keeps it outside the entry
            (an index key, a hash field); it wins over a name inside.
        created_at: Likewise for the creation time.

    Raises:
        BadEntryError: The entry is not an object, records an unknown kind, lacks
            fields, holds values of the wrong type, or names an invalid artifact.
    """
    if not isinstance(entry, dict):
        raise BadEntryError(f"holds {type(entry).__name__}, not a JSON object")
    kind = entry.get("kind")
    if kind not in ARTIFACT_KINDS:
        raise BadEntryError(f"has unknown kind {kind!r}")
    data = dict(entry)
    if created_at is not None:
        data["created_at"] = created_at
    if name is not None:
        data["name"] = name
    try:
        info = ArtifactInfo.from_dict(data)
        validate_artifact_name(info.name)  # InvalidNameError is a ValueError
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEntryError(f"is malformed ({exc!r})") from None
    return info


# -- workflows -----------------------------------------------------------------------


def workflow_metadata(record: WorkflowRecord) -> dict[str, Any]:
    """The record's metadata as a dict, checked to load back unchanged from JSON.

    Raises:
        WorkflowError: The metadata is not JSON data.
    """
    metadata = dict(record.metadata or {})
    json_bytes(metadata, f"metadata of workflow {record.name!r}", WorkflowError)
    return metadata


def workflow_source_bytes(name: str, source: str) -> bytes:
    """``source`` as UTF-8, the encoding every backend stores workflow source in.

    Raises:
        WorkflowError: The source holds lone surrogates, which UTF-8 cannot encode.
    """
    try:
        return source.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WorkflowError(f"workflow {name!r}: source is not encodable as UTF-8: {exc}") from None


# -- deps ------------------------------------------------------------------------------


def dep_spec(spec: object) -> tuple[str, str]:
    """``spec`` stripped, and the canonical name of the distribution it is about.

    Policy (no URLs, no installer options) is the caller's check, as the
    StorageBackend protocol says; a backend only needs one requirement on one line.

    Raises:
        DependencyError: ``spec`` is not a single-line requirement.
    """
    if not isinstance(spec, str) or not spec.strip() or any(c in spec for c in "\r\n\0"):
        raise DependencyError(f"package spec must be a one-line requirement, got {spec!r}")
    text = spec.strip()
    return text, dependency_name(text)


def dep_target(name: object) -> str:
    """Canonical distribution name of ``name`` (a package name or a spec).

    Raises:
        DependencyError: ``name`` is neither a package name nor a requirement.
    """
    if not isinstance(name, str) or not name.strip():
        raise DependencyError(f"package name must be a non-empty string, got {name!r}")
    return dependency_name(name.strip())


# -- embedding cache -----------------------------------------------------------------


def check_model_id(model_id: object) -> str:
    """``model_id`` if it can key an embedding cache.

    Raises:
        StorageError: It is not a non-empty string.
    """
    if not isinstance(model_id, str) or not model_id:
        raise StorageError(f"model id must be a non-empty string, got {model_id!r}")
    return model_id


def check_vector_keys(keys: Sequence[str]) -> None:
    """Refuse a lone string, which would otherwise be read as one key per character.

    Raises:
        StorageError: ``keys`` is a string.
    """
    if isinstance(keys, str):
        raise StorageError("keys must be a sequence of strings, not a single string")


def convert_vectors(
    vectors: Mapping[str, Sequence[float]], convert: Callable[[Sequence[float]], _V]
) -> dict[str, _V]:
    """Each vector turned into a backend's stored form by ``convert``.

    Args:
        vectors: Content hash -> embedding, as given by the caller.
        convert: Raises ``TypeError`` or ``ValueError`` for anything that is not
            a sequence of numbers.

    Raises:
        StorageError: A key is not a string or a vector holds non-numbers.
    """
    converted: dict[str, _V] = {}
    for key, vector in vectors.items():
        if not isinstance(key, str):
            raise StorageError(f"embedding cache keys must be strings, got {key!r}")
        try:
            converted[key] = convert(vector)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                f"embedding for key {key!r} must be a sequence of numbers: {exc}"
            ) from exc
    return converted
