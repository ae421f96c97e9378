"""Commands of the ``workflows`` namespace: the shared library of recipes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from py_code_mode._private.commands.base import Input
from py_code_mode._private.commands.fields import (
    Description,
    Limit,
    Metadata,
    Query,
    WorkflowName,
    capped,
    check_description,
    check_query,
)
from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import WorkflowNotFoundError
from py_code_mode.quotas import text_bytes
from py_code_mode.search.lexical import SearchDocument

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices
    from py_code_mode.models import WorkflowRecord

_SOURCE_CHARS_FOR_SEARCH = 2_000


class Search(Input):
    query: Query
    limit: Limit = 5


class Named(Input):
    name: WorkflowName


class Create(Input):
    name: WorkflowName
    source: str = Field(description="Python source defining run(...)")
    description: Description = ""
    metadata: Metadata = None


async def list_(host: HostServices, _: Input) -> list[dict[str, Any]]:
    return [r.to_dict(include_source=False) for r in await host.storage.list_workflows()]


async def search(host: HostServices, args: Search) -> list[dict[str, Any]]:
    check_query(host, args.query, "workflows")
    records = {r.name: r for r in await host.storage.list_workflows()}
    docs = [_document(r) for r in records.values()]
    hits = await host.ranker.rank(args.query, docs, limit=capped(args.limit, 5))
    return [
        {**records[h.id].to_dict(include_source=False), "score": round(h.score, 4), "why": h.why}
        for h in hits
    ]


async def get(host: HostServices, args: Named) -> dict[str, Any]:
    record = await host.storage.get_workflow(args.name)
    if record is None:
        raise WorkflowNotFoundError(
            f"no workflow named {args.name!r}; workflows.list() shows what exists"
        )
    return record.to_dict()


async def create(host: HostServices, args: Create) -> dict[str, Any]:
    quotas = host.quotas
    what = f"workflow {args.name!r}"
    size = text_bytes(args.source, quotas.max_workflow_source_bytes)
    quotas.check("max_workflow_source_bytes", size, f"the source of {what}", "workflows")
    check_description(host, args.description, what, "workflows")
    record = analyze_workflow(
        args.name, args.source, args.description or "", metadata=args.metadata
    )
    await host.storage.save_workflow(record, quotas=quotas)
    # Read back: the backend keeps the first created_at of a replaced workflow. Not
    # read before saving, so a save can repair a broken hand-written file.
    stored = await host.storage.get_workflow(record.name)
    return (stored or record).to_dict(include_source=False)


async def delete(host: HostServices, args: Named) -> bool:
    return await host.storage.delete_workflow(args.name)


def _document(record: WorkflowRecord) -> SearchDocument:
    params = " ".join(f"{p.name} {p.type}" for p in record.parameters)
    return SearchDocument(
        id=record.name,
        fields={
            "name": record.name,
            "description": record.description,
            "parameters": params,
            "source": record.source[:_SOURCE_CHARS_FOR_SEARCH],
        },
    )
