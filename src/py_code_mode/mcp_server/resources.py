"""Artifacts as MCP resources: ``artifact://<name>`` to list, read and subscribe to.

Text artifacts read as text, JSON values as ``application/json`` text, bytes as a
blob with their MIME type (PNG and JPEG recognised, else octet-stream). A client
that subscribes to an artifact is told when a call changes it, and told that the
list changed when artifacts appear or vanish; the check runs only for clients
that subscribed, so plain calls pay nothing for it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    BlobResourceContents,
    EmptyResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    Resource,
    ResourceTemplate,
    SubscribeRequestParams,
    TextResourceContents,
    UnsubscribeRequestParams,
)

from py_code_mode._private.safe_text import safe_data
from py_code_mode.errors import PyCodeModeError
from py_code_mode.mcp_server.run_reply import image_mime
from py_code_mode.mcp_server.sessions import connection_of

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from py_code_mode.session import Session

__all__ = ["MAX_SUBSCRIPTIONS", "SCHEME", "ArtifactResources", "artifact_uri"]

logger = logging.getLogger(__name__)

SCHEME = "artifact://"

LibraryOf = Callable[[ServerRequestContext[Any, Any]], "Session"]


_SUBSCRIBED = "py_code_mode.subscribed_uris"
MAX_SUBSCRIPTIONS = 1_000
"""URIs one connection may watch at once; each is held (and compared) per call."""
_SEEN = "py_code_mode.seen_artifacts"


def _state(ctx: ServerRequestContext[Any, Any]) -> dict[str, Any] | None:
    """Per-connection state (subscriptions outlive the request that made them)."""
    connection = connection_of(ctx)
    return None if connection is None else connection.state


def artifact_uri(name: str) -> str:
    """The resource URI of an artifact."""
    return SCHEME + quote(name, safe="/")


def _name_of(uri: str) -> str:
    if not uri.startswith(SCHEME) or len(uri) == len(SCHEME):
        raise MCPError(
            code=INVALID_PARAMS,
            message=f"{uri!r} is not an artifact URI; use artifact://<name>",
            data={"uri": uri},
        )
    return unquote(uri[len(SCHEME) :])


def _mime_of(entry: dict[str, Any]) -> str:
    kind = entry.get("kind")
    if kind == "str":
        return "text/plain"
    if kind == "json":
        return "application/json"
    return "application/octet-stream"


class ArtifactResources:
    """Serves ``resources/*`` from the artifact store of the caller's session."""

    def __init__(
        self, library_of: LibraryOf, *, before_read: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self._library_of = library_of
        self._before_read = before_read

    def register(self, server: MCPServer[Any]) -> None:
        """Install the handlers on ``server`` (replacing its static resource handlers)."""
        low = server._lowlevel_server
        low.add_request_handler("resources/list", PaginatedRequestParams, self._list)
        low.add_request_handler("resources/templates/list", PaginatedRequestParams, self._templates)
        low.add_request_handler("resources/read", ReadResourceRequestParams, self._read)
        low.add_request_handler("resources/subscribe", SubscribeRequestParams, self._subscribe)
        low.add_request_handler(
            "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe
        )

    def _library(self, ctx: ServerRequestContext[Any, Any]) -> Session:
        try:
            return self._library_of(ctx)
        except PyCodeModeError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc

    async def _index(self, ctx: ServerRequestContext[Any, Any]) -> list[dict[str, Any]]:
        if self._before_read is not None:
            await self._before_read()
        try:
            return cast(
                "list[dict[str, Any]]", safe_data(await self._library(ctx).list_artifacts())
            )
        except PyCodeModeError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc)) from exc

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams
    ) -> ListResourcesResult:
        resources = [
            Resource(
                uri=artifact_uri(str(entry["name"])),
                name=str(entry["name"]),
                description=str(entry.get("description") or "") or None,
                mime_type=_mime_of(entry),
                size=entry.get("size") if isinstance(entry.get("size"), int) else None,
            )
            for entry in await self._index(ctx)
        ]
        return ListResourcesResult(resources=resources)

    async def _templates(
        self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams
    ) -> ListResourceTemplatesResult:
        template = ResourceTemplate(
            uri_template=SCHEME + "{+name}",
            name="artifact",
            description="A stored artifact by name (artifacts.save in run_code).",
        )
        return ListResourceTemplatesResult(resource_templates=[template])

    async def _read(
        self, ctx: ServerRequestContext[Any, Any], params: ReadResourceRequestParams
    ) -> ReadResourceResult:
        name = _name_of(params.uri)
        library = self._library(ctx)
        if self._before_read is not None:
            await self._before_read()
        try:
            # Agent code may have stored lone surrogates; unescaped they kill the transport.
            data = safe_data(await library.load_artifact(name))
        except PyCodeModeError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": params.uri}) from exc
        contents: TextResourceContents | BlobResourceContents
        if isinstance(data, bytes):
            contents = BlobResourceContents(
                uri=params.uri,
                blob=base64.b64encode(data).decode("ascii"),
                mime_type=image_mime(data) or "application/octet-stream",
            )
        elif isinstance(data, str):
            contents = TextResourceContents(uri=params.uri, text=data, mime_type="text/plain")
        else:
            contents = TextResourceContents(
                uri=params.uri,
                text=json.dumps(data, ensure_ascii=False),
                mime_type="application/json",
            )
        return ReadResourceResult(contents=[contents])

    async def _subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        _name_of(params.uri)
        state = _state(ctx)
        if state is None:
            raise MCPError(code=INVALID_PARAMS, message="this connection cannot hold subscriptions")
        subscribed: set[str] = state.setdefault(_SUBSCRIBED, set())
        if params.uri not in subscribed and len(subscribed) >= MAX_SUBSCRIPTIONS:
            raise MCPError(
                code=INVALID_PARAMS,
                message=f"this connection already watches {MAX_SUBSCRIPTIONS} artifacts; "
                "unsubscribe from one first",
                data={"uri": params.uri},
            )
        if _SEEN not in state:
            state[_SEEN] = self._snapshot(await self._index(ctx))
        subscribed.add(params.uri)
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        state = _state(ctx)
        if state is not None:
            state.get(_SUBSCRIBED, set()).discard(params.uri)
        return EmptyResult()

    @staticmethod
    def _snapshot(index: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            str(e["name"]): (e.get("updated_at"), e.get("size"), e.get("created_at")) for e in index
        }

    async def notify_changes(self, ctx: ServerRequestContext[Any, Any]) -> None:
        """Tell a subscribed client which artifacts a call changed (no-op otherwise)."""
        state = _state(ctx)
        subscribed: set[str] = set() if state is None else state.get(_SUBSCRIBED, set())
        if state is None or not subscribed:
            return
        try:
            now = self._snapshot(await self._library(ctx).list_artifacts())
        except (PyCodeModeError, MCPError) as exc:
            logger.debug("artifact change check failed: %s", exc)
            return
        before: dict[str, Any] = state.get(_SEEN, {})
        state[_SEEN] = now
        if set(now) != set(before):
            await ctx.session.send_resource_list_changed()
        for name in set(now) | set(before):
            uri = artifact_uri(name)
            if uri in subscribed and now.get(name) != before.get(name):
                await ctx.session.send_resource_updated(uri)
