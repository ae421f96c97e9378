"""Quotas: how much one session may store or send through the host, each named once.

The host checks every quota in its command table (:mod:`py_code_mode._private.commands`)
before the write, or, for totals shared by several processes (bytes and counts per
storage), inside the storage backend's own lock or Redis script, so two agents
cannot both squeeze under a limit. A write over a quota raises
:class:`~py_code_mode.errors.QuotaExceededError` (an ``ArtifactQuotaError`` or
``WorkflowQuotaError`` in those namespaces) naming the quota, the value, the limit
and how to raise it; nothing stored changes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from py_code_mode.errors import (
    ArtifactQuotaError,
    ConfigError,
    QuotaExceededError,
    WorkflowQuotaError,
)

__all__ = ["Quotas"]

_KIB: Final = 1024
_MIB: Final = 1024 * _KIB
_GIB: Final = 1024 * _MIB
_UNITS: Final = {"": 1, "k": _KIB, "kb": _KIB, "m": _MIB, "mb": _MIB, "g": _GIB, "gb": _GIB}
_SIZE_RE: Final = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$", re.IGNORECASE)

Namespace = Literal["artifacts", "workflows", "tools", "session"]

_ERRORS: Final[dict[str, type[QuotaExceededError]]] = {
    "artifacts": ArtifactQuotaError,
    "workflows": WorkflowQuotaError,
}


class Quotas(BaseModel):
    """Limits on what agents store and send; defaults are generous for real use.

    Sizes are bytes (UTF-8 for text); counts are per storage (a FileStorage base
    directory, a Redis prefix), shared by every session on it. Set them with
    ``Session(..., quotas=Quotas(max_artifacts=500))``, or on the command line
    with ``--quota max_artifacts=500`` (sizes may end in K, M or G).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_code_bytes: int = Field(default=4 * _MIB, gt=0, description="code of one run")
    max_artifact_bytes: int = Field(default=100 * _MIB, gt=0, description="one artifact")
    max_total_artifact_bytes: int = Field(
        default=4 * _GIB, gt=0, description="all artifacts of a storage"
    )
    max_artifacts: int = Field(default=10_000, gt=0, description="artifacts of a storage")
    max_workflows: int = Field(default=5_000, gt=0, description="workflows of a storage")
    max_workflow_source_bytes: int = Field(
        default=1 * _MIB, gt=0, description="source of one workflow"
    )
    max_description_bytes: int = Field(
        default=16 * _KIB, gt=0, description="description of a workflow or artifact"
    )
    max_query_chars: int = Field(default=2_000, gt=0, description="one search query")

    @classmethod
    def from_assignments(cls, assignments: Iterable[str], base: Quotas | None = None) -> Quotas:
        """Quotas from ``NAME=VALUE`` strings (``--quota`` flags) over ``base``.

        Raises:
            ConfigError: Not ``NAME=VALUE``, an unknown name, or not a positive size.
        """
        values = (base or cls()).model_dump()
        for item in assignments:
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in cls.model_fields:
                raise ConfigError(
                    f"--quota {item!r}: expected NAME=VALUE with NAME one of "
                    f"{', '.join(cls.model_fields)}"
                )
            match = _SIZE_RE.match(raw)
            unit = match.group(2).lower() if match else ""
            if match is None or unit not in _UNITS:
                raise ConfigError(
                    f"--quota {item!r}: VALUE must be a positive integer, optionally "
                    "ending in K, M or G (KiB, MiB, GiB), e.g. max_artifact_bytes=50M"
                )
            values[name] = int(match.group(1)) * _UNITS[unit]
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"--quota: {exc.errors()[0]['loc'][0]} must be positive") from None

    def describe(self) -> list[tuple[str, int, str]]:
        """``(name, value, what it limits)`` of every quota, for ``doctor``."""
        return [
            (name, getattr(self, name), field.description or "")
            for name, field in type(self).model_fields.items()
        ]

    def check(self, quota: str, value: int, what: str, namespace: Namespace) -> None:
        """Raise when ``value`` is over ``quota``.

        Args:
            quota: A field name, e.g. ``"max_artifact_bytes"``.
            value: What the write needs: bytes, characters or a count.
            what: Starts the message, e.g. ``"artifact 'x'"``.
            namespace: Picks the error class agent code can catch by namespace.

        Raises:
            QuotaExceededError: Over the quota (``ArtifactQuotaError``, ...).
        """
        limit: int = getattr(self, quota)
        if value > limit:
            raise self.exceeded(quota, value, what, namespace)

    def exceeded(
        self, quota: str, value: int, what: str, namespace: Namespace
    ) -> QuotaExceededError:
        """The error for ``value`` over ``quota`` (see :meth:`check`)."""
        limit: int = getattr(self, quota)
        verb, unit = "would be", "characters" if quota.endswith("_chars") else "bytes"
        advice = "Make it smaller"
        if quota in ("max_artifacts", "max_workflows"):
            verb, unit, advice = "would hold", namespace, f"Delete unused {namespace}"
        return _ERRORS.get(namespace, QuotaExceededError)(
            f"{what} {verb} {value:,} {unit}, over the quota {quota}={limit:,}; nothing "
            f"was changed. {advice}, or raise the quota: "
            f"Session(quotas=Quotas({quota}=...)) or --quota {quota}=N",
            quota=quota,
            value=value,
            limit=limit,
        )


def text_bytes(text: str, limit: int) -> int:
    """UTF-8 size of ``text``, or a lower bound above ``limit`` without encoding it."""
    if len(text) > limit:  # at least one byte per character
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))
