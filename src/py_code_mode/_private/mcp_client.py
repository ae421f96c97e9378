"""An MCP client session on the installed SDK, 1.x or 2.x, behind one small surface.

Frameworks hold the ``mcp`` SDK at 1.x (mbxai pins ``typing-inspection<=0.4.0``,
which only mcp <= 1.21 accepts; pybotchi[mcp] needs mcp < 2), and users of those
frameworks declare MCP servers as tools too. The two SDK lines speak the same
protocol through different APIs: 2.x has the high-level ``mcp.client.Client`` and
snake_case ``mcp_types``; 1.x has ``mcp.ClientSession(read, write)`` over a
transport context manager and camelCase ``mcp.types`` (and later 1.x releases
deprecate 1.21's ``streamablehttp_client`` for ``streamable_http_client``, which
is used where present). This module opens a session with whichever is installed
and hands back plain data (:class:`ServerTool`, :class:`ToolResult`) and plain
errors (:class:`ServerError`, :class:`ConnectionClosedError`), so the tool adapter
has one code path.

Both branches keep the same behaviour: a stdio server gets the SDK's safe
environment plus the configured ``env`` and nothing else of the host's, and a
line of its output that is not UTF-8 is skipped rather than ending or wedging the
session; HTTP transports never follow redirects (2.x refuses them; the 1.x branch
uses a client built the same way instead of the 1.x default, which follows them);
the connect timeout bounds each HTTP operation and a response stream may stay quiet
for ``max(300 s, timeout)``.

The SDK is imported only when a session opens. The 1.x modules are reached with
:func:`importlib.import_module` so that this file type-checks against the locked
2.x SDK without the 1.x package.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TextIO

from py_code_mode._private.mcp_sdk import mcp_major

if TYPE_CHECKING:
    from mcp.client import Client

__all__ = [
    "ConnectionClosedError",
    "HttpTarget",
    "McpClient",
    "ServerError",
    "ServerTool",
    "StdioTarget",
    "ToolResult",
    "open_client",
]

_STREAM_QUIET: float = 300.0
"""Seconds a response stream may stay silent (both SDKs' default)."""
_UNDECODABLE: Final = "replace"
"""A stdio server's bytes that are not UTF-8 become U+FFFD: the line is then not
JSON and is skipped. With the SDKs' default (strict), 1.x drops the connection and
2.x stops reading replies while the connection looks alive."""


@dataclass(frozen=True, slots=True)
class ServerTool:
    """One entry of a server's ``tools/list``."""

    name: str
    title: str | None
    description: str | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A ``tools/call`` result.

    Attributes:
        text: The content blocks as text, one per line (non-text blocks summarised).
        has_content: Whether there was any content block.
    """

    text: str
    has_content: bool
    is_error: bool
    structured: Any = None


class ServerError(Exception):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class ConnectionClosedError(Exception):
    """The connection closed before the server answered."""


@dataclass(frozen=True, slots=True)
class StdioTarget:
    """A server program to start and talk to over its stdin/stdout."""

    command: str
    args: Sequence[str]
    env: Mapping[str, str]
    """Added to the SDK's safe set (PATH, HOME, ...); nothing else is inherited."""
    cwd: str | None
    errlog: TextIO
    """Where the server's stderr goes."""


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A server reached over streamable HTTP or the older SSE transport."""

    transport: Literal["streamable-http", "sse"]
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 30.0
    call_timeout: float = 60.0


class McpClient(Protocol):
    """An initialized session, usable until the exit stack it was opened on closes."""

    async def list_tools(self, cursor: str | None) -> tuple[list[ServerTool], str | None]:
        """One page of tools and the cursor of the next (None on the last)."""
        ...

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one tool.

        Raises:
            ServerError: The server answered with a JSON-RPC error.
            ConnectionClosedError: The connection closed before the answer.
        """
        ...


async def open_client(
    stack: contextlib.AsyncExitStack,
    target: StdioTarget | HttpTarget,
    *,
    name: str,
    version: str,
) -> McpClient:
    """Connect to ``target``, greet it as ``name``/``version`` and return the session.

    The session's context managers are entered on ``stack``; leaving it ends the
    session and stops a stdio server.
    """
    major = mcp_major()
    if major is not None and major < 2:
        return await _V1Client.open(stack, target, name=name, version=version)
    return await _V2Client.open(stack, target, name=name, version=version)


# -- content -------------------------------------------------------------------------


def _field(obj: Any, snake: str, camel: str) -> Any:
    value = getattr(obj, snake, None)
    return getattr(obj, camel, None) if value is None else value


def _describe_content(block: Any) -> str:
    kind = getattr(block, "type", "")
    if kind == "text":
        return str(getattr(block, "text", ""))
    if kind in ("image", "audio"):
        data = getattr(block, "data", "")
        size = len(data) * 3 // 4
        return f"[{kind}: {_field(block, 'mime_type', 'mimeType') or '?'}, about {size} bytes]"
    if kind == "resource_link":
        return f"[resource link: {getattr(block, 'uri', '?')}]"
    if kind == "resource":
        resource = getattr(block, "resource", None)
        text = getattr(resource, "text", None)
        if isinstance(text, str):
            return text
        mime = _field(resource, "mime_type", "mimeType") or "?"
        return f"[resource: {getattr(resource, 'uri', '?')}, {mime}]"
    return f"[{kind or 'unknown'} content]"


def _tool_result(content: Sequence[Any], *, is_error: bool, structured: Any) -> ToolResult:
    return ToolResult(
        text="\n".join(_describe_content(block) for block in content),
        has_content=bool(content),
        is_error=bool(is_error),
        structured=structured,
    )


# -- mcp 2.x -------------------------------------------------------------------------


class _V2Client:
    def __init__(self, client: Client) -> None:
        self._client = client

    @classmethod
    async def open(
        cls,
        stack: contextlib.AsyncExitStack,
        target: StdioTarget | HttpTarget,
        *,
        name: str,
        version: str,
    ) -> _V2Client:
        from mcp.client import Client
        from mcp_types import Implementation

        transport: Any
        if isinstance(target, StdioTarget):
            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=target.command,
                args=list(target.args),
                env=dict(target.env),
                cwd=target.cwd,
                encoding_error_handler=_UNDECODABLE,
            )
            transport = stdio_client(params, errlog=target.errlog)
        elif target.transport == "streamable-http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = httpx2.AsyncClient(
                headers=dict(target.headers),
                timeout=httpx2.Timeout(
                    target.connect_timeout, read=max(_STREAM_QUIET, target.call_timeout)
                ),
            )
            await stack.enter_async_context(http)
            transport = streamable_http_client(target.url, http_client=http)
        else:
            from mcp.client.sse import sse_client

            transport = sse_client(
                target.url, headers=dict(target.headers) or None, timeout=target.connect_timeout
            )
        client = Client(
            transport, cache=None, client_info=Implementation(name=name, version=version)
        )
        return cls(await stack.enter_async_context(client))

    async def list_tools(self, cursor: str | None) -> tuple[list[ServerTool], str | None]:
        page = await self._client.list_tools(cursor=cursor)
        tools = [
            ServerTool(
                name=tool.name,
                title=tool.title,
                description=tool.description,
                input_schema=tool.input_schema,
                output_schema=tool.output_schema,
            )
            for tool in page.tools
        ]
        return tools, page.next_cursor

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED

        try:
            result = await self._client.call_tool(name, arguments)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ConnectionClosedError(str(exc)) from exc
            raise ServerError(exc.code, str(exc)) from exc
        return _tool_result(
            result.content, is_error=result.is_error, structured=result.structured_content
        )


# -- mcp 1.x -------------------------------------------------------------------------


def _v1_http_client(
    headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
) -> Any:
    """The 1.x SDK's HTTP client factory, without following redirects (as 2.x does)."""
    httpx = importlib.import_module("httpx")
    return httpx.AsyncClient(headers=headers, timeout=timeout, auth=auth, follow_redirects=False)


class _V1Client:
    def __init__(self, session: Any) -> None:
        self._session = session

    @classmethod
    async def open(
        cls,
        stack: contextlib.AsyncExitStack,
        target: StdioTarget | HttpTarget,
        *,
        name: str,
        version: str,
    ) -> _V1Client:
        mcp = importlib.import_module("mcp")
        types = importlib.import_module("mcp.types")
        if isinstance(target, StdioTarget):
            stdio = importlib.import_module("mcp.client.stdio")
            params = stdio.StdioServerParameters(
                command=target.command,
                args=list(target.args),
                env=dict(target.env),
                cwd=target.cwd,
                encoding_error_handler=_UNDECODABLE,
            )
            streams = await stack.enter_async_context(
                stdio.stdio_client(params, errlog=target.errlog)
            )
        elif target.transport == "streamable-http":
            http = importlib.import_module("mcp.client.streamable_http")
            quiet = max(_STREAM_QUIET, target.call_timeout)
            if hasattr(http, "streamable_http_client"):  # later 1.x: deprecates the other
                httpx = importlib.import_module("httpx")
                timeout = httpx.Timeout(target.connect_timeout, read=quiet)
                client = _v1_http_client(dict(target.headers), timeout)
                await stack.enter_async_context(client)
                transport = http.streamable_http_client(target.url, http_client=client)
            else:
                transport = http.streamablehttp_client(
                    target.url,
                    headers=dict(target.headers),
                    timeout=target.connect_timeout,
                    sse_read_timeout=quiet,
                    httpx_client_factory=_v1_http_client,
                )
            streams = await stack.enter_async_context(transport)
        else:
            sse = importlib.import_module("mcp.client.sse")
            streams = await stack.enter_async_context(
                sse.sse_client(
                    target.url,
                    headers=dict(target.headers) or None,
                    timeout=target.connect_timeout,
                    httpx_client_factory=_v1_http_client,
                )
            )
        read, write = streams[0], streams[1]  # streamable HTTP adds a session-id getter
        session = await stack.enter_async_context(
            mcp.ClientSession(
                read, write, client_info=types.Implementation(name=name, version=version)
            )
        )
        await session.initialize()
        return cls(session)

    async def list_tools(self, cursor: str | None) -> tuple[list[ServerTool], str | None]:
        page = await self._session.list_tools(cursor=cursor)
        tools = [
            ServerTool(
                name=str(tool.name),
                title=tool.title,
                description=tool.description,
                input_schema=tool.inputSchema,
                output_schema=tool.outputSchema,
            )
            for tool in page.tools
        ]
        return tools, page.nextCursor

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        exceptions = importlib.import_module("mcp.shared.exceptions")
        types = importlib.import_module("mcp.types")
        try:
            result = await self._session.call_tool(name, arguments)
        except exceptions.McpError as exc:
            code = int(exc.error.code)
            if code == types.CONNECTION_CLOSED:
                raise ConnectionClosedError(str(exc)) from exc
            raise ServerError(code, str(exc)) from exc
        return _tool_result(
            result.content, is_error=result.isError, structured=result.structuredContent
        )
