"""How artifact values become bytes and back, shared by every storage backend.

One implementation keeps the type rules identical across backends: what one
accepts and gives back, all do.
"""

from __future__ import annotations

import json
import math
from typing import Final, cast

from py_code_mode.errors import ArtifactError, ArtifactNotFoundError
from py_code_mode.models import ArtifactKind
from py_code_mode.storage.protocol import ArtifactValue

__all__ = ["decode_artifact", "encode_artifact", "json_bytes", "not_found"]

ACCEPTED_TYPES: Final = (
    "str, bytes, or a JSON value (dict with str keys, list, int, float, bool, None)"
)


def not_found(name: str) -> ArtifactNotFoundError:
    """The error for a missing artifact, with a hint."""
    return ArtifactNotFoundError(f"no artifact named {name!r}; artifacts.list() shows what exists")


def json_bytes(value: object, what: str, error: type[Exception]) -> bytes:
    """Compact UTF-8 JSON of ``value``; raise ``error`` unless it loads back unchanged.

    ``json.dumps`` alone is too lenient: it turns tuples into lists and int keys
    into strings, so the loaded value would differ from the saved one.
    """
    stack: list[tuple[object, str]] = [(value, "")]
    seen: set[int] = set()
    while stack:
        item, where = stack.pop()
        if item is None or isinstance(item, str | bool | int):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise error(f"{what}: {item!r} at {where or 'top level'} is not allowed in JSON")
            continue
        if isinstance(item, list | dict):
            if id(item) in seen:
                continue  # shared or circular; json.dumps reports cycles
            seen.add(id(item))
            if isinstance(item, list):
                stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
                continue
            for k, v in item.items():
                if not isinstance(k, str):
                    raise error(
                        f"{what}: dict key {k!r} at {where or 'top level'} is a "
                        f"{type(k).__name__}; JSON object keys must be strings"
                    )
                stack.append((v, f"{where}[{k!r}]"))
            continue
        hint = " (convert it to a list)" if isinstance(item, tuple | set | frozenset) else ""
        place = f"the value at {where}" if where else "the value"
        raise error(f"{what}: {place} is a {type(item).__name__}{hint}; accepted: {ACCEPTED_TYPES}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise error(f"{what} cannot be stored as JSON: {reason}") from None
    return text.encode("utf-8", "surrogatepass")


def encode_artifact(
    name: str, data: object, limit: int, *, limit_name: str
) -> tuple[ArtifactKind, bytes]:
    """Serialize ``data``; the kind tells :func:`decode_artifact` how to give it back."""
    kind: ArtifactKind
    if isinstance(data, bytes):
        kind, payload = "bytes", data if type(data) is bytes else bytes(data)
    elif isinstance(data, str):
        if len(data) > limit:  # at least one byte per character: too big before encoding
            _too_big(name, len(data), limit, limit_name, approx=True)
        kind, payload = "str", data.encode("utf-8", "surrogatepass")
    else:
        if isinstance(data, bytearray | memoryview):
            raise ArtifactError(
                f"artifact {name!r}: cannot save a {type(data).__name__}; pass bytes(data)"
            )
        kind, payload = "json", json_bytes(data, f"artifact {name!r}", ArtifactError)
    if len(payload) > limit:
        _too_big(name, len(payload), limit, limit_name)
    return kind, payload


def _too_big(name: str, size: int, limit: int, limit_name: str, *, approx: bool = False) -> None:
    at_least = "at least " if approx else ""
    raise ArtifactError(
        f"artifact {name!r} is {at_least}{size:,} bytes, over the limit of {limit:,} bytes "
        f"({limit_name}); split it into several artifacts"
    )


def decode_artifact(name: str, kind: ArtifactKind, payload: bytes, *, where: str) -> ArtifactValue:
    """The value ``encode_artifact`` produced ``payload`` from.

    Args:
        name: Artifact name, for messages.
        kind: The stored kind.
        payload: The stored bytes.
        where: Where the payload lives, for the message when it is corrupt.
    """
    if kind == "bytes":
        return payload
    try:
        text = payload.decode("utf-8", "surrogatepass")
        if kind == "str":
            return text
        return cast(ArtifactValue, json.loads(text))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError
        raise ArtifactError(
            f"artifact {name!r}: {where} no longer holds valid {kind} data ({exc}); "
            "it was probably changed outside py-code-mode. Save the artifact again"
        ) from None
