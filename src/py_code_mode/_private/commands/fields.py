"""Argument types shared by several commands, each saying what to send."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from py_code_mode._private.names import validate_artifact_name, validate_workflow_name

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


def capped(limit: int | None, default: int) -> int:
    """``limit`` (or ``default``) capped at :data:`MAX_SEARCH_LIMIT`."""
    return min(limit or default, MAX_SEARCH_LIMIT)
