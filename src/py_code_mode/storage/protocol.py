"""The storage axis: where workflows, artifacts, the deps list and caches live."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from py_code_mode.models import ArtifactInfo, WorkflowRecord

if TYPE_CHECKING:
    from py_code_mode.quotas import Quotas

__all__ = ["ArtifactValue", "StorageBackend"]

ArtifactValue = str | bytes | dict[str, Any] | list[Any] | int | float | bool | None
"""What an artifact can hold; ``load`` returns the same type that was saved."""


@runtime_checkable
class StorageBackend(Protocol):
    """A place that persists the shared state of sessions.

    Implementations must be safe to use from several processes at once: many agents
    share one library. Every method raises :class:`~py_code_mode.errors.StorageError`
    (or a subclass) for backend failures, never a third-party exception.
    """

    async def open(self) -> None:
        """Connect or create what is needed. Idempotent."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...

    # -- workflows ---------------------------------------------------------------
    async def list_workflows(self) -> list[WorkflowRecord]:
        """All workflows, sorted by name."""
        ...

    async def get_workflow(self, name: str) -> WorkflowRecord | None:
        """One workflow, or ``None`` when absent."""
        ...

    async def save_workflow(self, record: WorkflowRecord, *, quotas: Quotas | None = None) -> None:
        """Create or replace a workflow (already validated by the caller).

        With ``quotas``, a new workflow beyond ``max_workflows`` raises
        ``WorkflowQuotaError``, checked atomically with the write.
        """
        ...

    async def delete_workflow(self, name: str) -> bool:
        """Remove a workflow; ``False`` when it did not exist."""
        ...

    # -- artifacts ---------------------------------------------------------------
    async def list_artifacts(self) -> list[ArtifactInfo]:
        """Index entries of all artifacts, sorted by name."""
        ...

    async def save_artifact(
        self,
        name: str,
        data: ArtifactValue,
        *,
        description: str = "",
        metadata: Mapping[str, Any] | None = None,
        quotas: Quotas | None = None,
    ) -> ArtifactInfo:
        """Store ``data`` under ``name`` (validated), replacing any previous value.

        With ``quotas``, ``max_artifact_bytes``, ``max_total_artifact_bytes`` and
        ``max_artifacts`` are checked atomically with the write (a running total, not
        a rescan); over one raises ``ArtifactQuotaError`` and nothing changes.
        """
        ...

    async def load_artifact(self, name: str) -> ArtifactValue:
        """The stored value, of the type it was saved with.

        Raises:
            ArtifactNotFoundError: No artifact has this name.
        """
        ...

    async def get_artifact_info(self, name: str) -> ArtifactInfo | None:
        """Index entry of one artifact, or ``None`` when absent."""
        ...

    async def delete_artifact(self, name: str) -> bool:
        """Remove an artifact; ``False`` when it did not exist."""
        ...

    # -- deps ----------------------------------------------------------------------
    async def list_deps(self) -> list[str]:
        """The persisted package requirement specs, in insertion order."""
        ...

    async def add_dep(self, spec: str) -> None:
        """Add a validated spec, replacing an entry for the same distribution name."""
        ...

    async def remove_dep(self, name: str) -> bool:
        """Remove the entry for distribution ``name`` (canonicalised); ``False`` if absent."""
        ...

    # -- embedding cache -----------------------------------------------------------
    async def get_vectors(self, model_id: str, keys: Sequence[str]) -> dict[str, list[float]]:
        """Cached embeddings of ``model_id`` for the content hashes in ``keys`` (hits only)."""
        ...

    async def put_vectors(self, model_id: str, vectors: Mapping[str, Sequence[float]]) -> None:
        """Cache embeddings of ``model_id`` keyed by content hash."""
        ...
