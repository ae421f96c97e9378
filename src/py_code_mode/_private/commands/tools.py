"""Commands of the ``tools`` namespace: declared tools, running on the host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from py_code_mode._private.commands.base import Input
from py_code_mode._private.commands.fields import Limit, Query, capped, check_query
from py_code_mode.tools.registry import tool_search_document

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices


class Search(Input):
    query: Query
    limit: Limit = 10


class Call(Input):
    tool: str = Field(description="a tool name from tools.list()")
    callable: str | None = Field(default=None, description="a callable name of the tool, or null")
    args: dict[str, Any] | None = Field(default=None, description="keyword arguments as a dict")


async def list_(host: HostServices, _: Input) -> list[dict[str, Any]]:
    return await host.tools.list()


async def names(host: HostServices, _: Input) -> list[str]:
    return host.tools.names()


async def search(host: HostServices, args: Search) -> list[dict[str, Any]]:
    check_query(host, args.query, "tools")
    entries = {entry["name"]: entry for entry in await host.tools.list()}
    docs = [tool_search_document(entry) for entry in entries.values()]
    hits = await host.ranker.rank(args.query, docs, limit=capped(args.limit, 10))
    return [{**entries[h.id], "score": round(h.score, 4), "why": h.why} for h in hits]


async def call(host: HostServices, args: Call) -> Any:
    await host.approvals.check(host.tools, args.tool, args.callable, args.args or {})
    return await host.tools.call(args.tool, args.callable, args.args or {})
