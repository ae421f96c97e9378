"""Argument types shared by several commands, each saying what to send."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from py_code_mode._private.names import validate_artifact_name, validate_workflow_name
from py_code_mode.quotas import text_bytes

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices
    from py_code_mode.quotas import Namespace

__all__ = ["ArtifactName", "Description", "Limit", "Metadata", "Query", "WorkflowName"]

MAX_SEARCH_LIMIT = 100

Query = Annotated[str, Field(description="a string saying what you look for, e.g. 'fetch json'")]
Limit = Annotated[
    int | None, Field(ge=1, description="a positive integer (at most 100 results are returned)")
]
WorkflowName = Annotated[
    str, BeforeValidator(validate_workflow_name), Field(description="a workflow name")
]
ArtifactName = Annotated[
    str, BeforeValidator(validate_artifact_name), Field(description="an artifact name")
]
Description = Annotated[str | None, Field(description="a one-line description string")]
Metadata = Annotated[dict[str, Any] | None, Field(description="a dict of JSON data")]


def check_query(host: HostServices, query: str, namespace: Namespace) -> None:
    """Refuse a query over ``max_query_chars`` before it reaches the ranker."""
    host.quotas.check("max_query_chars", len(query), "the search query", namespace)


def check_description(
    host: HostServices, description: str | None, what: str, namespace: Namespace
) -> None:
    """Refuse a description over ``max_description_bytes``."""
    limit = host.quotas.max_description_bytes
    size = text_bytes(description or "", limit)
    host.quotas.check("max_description_bytes", size, f"the description of {what}", namespace)


def capped(limit: int | None, default: int) -> int:
    """``limit`` (or ``default``) capped at :data:`MAX_SEARCH_LIMIT`."""
    return min(limit or default, MAX_SEARCH_LIMIT)
