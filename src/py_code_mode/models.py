"""Plain records exchanged between storage, host services and the facade.

Dataclasses rather than pydantic models: they are on the import path of
``py_code_mode`` and must stay cheap to import. ``to_dict`` gives the JSON shape
that the facade, the namespaces and the MCP server all return.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["ArtifactInfo", "ArtifactKind", "WorkflowParameter", "WorkflowRecord"]

ArtifactKind = Literal["str", "bytes", "json"]


@dataclass(frozen=True, slots=True)
class WorkflowParameter:
    """One parameter of a workflow's ``run`` function, read from its signature."""

    name: str
    type: str = "Any"
    required: bool = True
    default: Any = None
    kind: Literal["positional_or_keyword", "keyword_only", "var_positional", "var_keyword"] = (
        "positional_or_keyword"
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A stored workflow: Python source defining ``run(...)`` plus what describes it.

    Attributes:
        name: Identifier the workflow is invoked by.
        source: Full Python source.
        description: From the creator, else the ``run`` (or module) docstring.
        parameters: Extracted from ``run``'s signature.
        is_async: True when ``run`` is ``async def``.
        metadata: Free-form JSON data the creator attached.
        created_at: Unix timestamp.
        updated_at: Unix timestamp.
    """

    name: str
    source: str
    description: str = ""
    parameters: tuple[WorkflowParameter, ...] = ()
    is_async: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self, *, include_source: bool = True) -> dict[str, Any]:
        """Plain JSON-able form; listings leave the source out."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": [p.to_dict() for p in self.parameters],
            "is_async": self.is_async,
            "metadata": dict(self.metadata),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        if include_source:
            data["source"] = self.source
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowRecord:
        """Inverse of :meth:`to_dict` (with source)."""
        return cls(
            name=data["name"],
            source=data["source"],
            description=data.get("description", ""),
            parameters=tuple(WorkflowParameter(**p) for p in data.get("parameters", ())),
            is_async=bool(data.get("is_async", False)),
            metadata=dict(data.get("metadata") or {}),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """Index entry of a stored artifact (not its data).

    Attributes:
        name: Relative, validated name (may contain ``/``).
        kind: ``"str"``, ``"bytes"`` or ``"json"``: what ``load`` gives back.
        description: Free text from the saver.
        metadata: Free-form JSON data from the saver.
        size: Size of the stored payload in bytes.
        created_at: Unix timestamp of the first save.
        updated_at: Unix timestamp of the last save.
    """

    name: str
    kind: ArtifactKind
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactInfo:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            description=data.get("description", ""),
            metadata=dict(data.get("metadata") or {}),
            size=int(data.get("size", 0)),
            created_at=float(data.get("created_at", 0.0)),
            updated_at=float(data.get("updated_at", 0.0)),
        )
