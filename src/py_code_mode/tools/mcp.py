"""MCP tools: the tools of an MCP server, called like Python functions.

A tool file names a server; each tool of that server becomes a callable::

    name: files
    type: mcp
    description: Read-only access to the project files
    transport: stdio                  # stdio | sse | streamable-http
    command: mcp-server-filesystem    # stdio: the server program (relative paths: to this file)
    args: ["${HOME}/project"]
    paths: ["${HOME}/project"]        # what its jail shows read-only (nothing else of yours)
    writable_paths: []                # what it may change
    network: false                    # true: only through the egress proxy (http(s)_proxy)
    env: {LOG_LEVEL: warning}         # added to a minimal environment (PATH, HOME, ...)
    cwd: ${HOME}/project              # a declared path; default: the jail's private /tmp
    timeout: 60                       # seconds per call
    connect_timeout: 30               # seconds to start and greet the server

or, over HTTP::

    name: websearch
    type: mcp
    transport: streamable-http
    url: https://mcp.example.com/mcp
    headers: {Authorization: "Bearer ${SEARCH_TOKEN}"}

``${VAR}`` in ``command``, ``args``, ``cwd``, ``env``, ``url`` and ``headers`` is
expanded from the host environment when the file is loaded. A stdio server does
not inherit the host environment: it gets ``PATH``, ``HOME``, ``USER``,
``LOGNAME``, ``SHELL``, ``TERM`` (the SDK's safe set) plus ``env``.

A stdio server runs in the same bubblewrap jail as CLI tool calls
(:mod:`py_code_mode._private.tool_jail`), for the whole life of its connection:
agent code chooses every argument of its tools, and a server's path or URL
handling is not ours to trust. The jail shows the system directories, the
server's own program and the declared ``paths`` (read-only) and
``writable_paths``; ``HOME`` is its private ``/tmp``; it has no network unless
``network: true``, which gives it a forwarder on the jail's own loopback to an
egress proxy that refuses non-public addresses (``http(s)_proxy`` point at it;
there is no other route and no DNS). ``jail: false`` runs one server
unjailed (with a warning), as ``PY_CODE_MODE_TOOL_JAIL=off`` does for all tools.

Agent code calls ``tools.files.read_file(path="README.md")``. Server tool names
that are not Python identifiers (``get-weather``) are offered under a Python name
(``get_weather``); the original name works too. Results are the tool's
structured content when it has some, else its text; a result flagged as an
error raises :class:`~py_code_mode.errors.ToolError` with the server's message.

Connections open on first use (listing or calling), are shared by all calls,
and close with :meth:`McpTool.aclose`. Each connection lives in one task that
owns the SDK's context managers (anyio requires them to be entered and exited in
the same task) and serves calls handed to it through a queue. When a call finds
the connection broken (the server died, an HTTP server restarted) the tool
reconnects and sends the call once more; a tool whose call kills its own server
is therefore attempted twice before the error is reported.

The adapter works with the mcp SDK 1.21+ as well as 2.x (frameworks such as
mbxai and pybotchi hold it at 1.x): :mod:`py_code_mode._private.mcp_client` opens
the session with whichever is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, Self

import anyio
from pydantic import Field, field_validator, model_validator

from py_code_mode._private.mcp_client import (
    ConnectionClosedError,
    HttpTarget,
    McpClient,
    ServerError,
    ServerTool,
    StdioTarget,
    ToolResult,
    open_client,
)
from py_code_mode._private.names import is_keyword
from py_code_mode._private.tool_calls import (
    RESERVED_CALLABLES,
    reject_missing,
    require_json,
)
from py_code_mode._private.tool_jail import jailed_tool_argv
from py_code_mode._version import __version__
from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.tools._egress import AddressPolicy, IPNetwork, parse_networks
from py_code_mode.tools._egress_proxy import EgressProxy
from py_code_mode.tools._expand import Redactor, expand_headers, expand_value
from py_code_mode.tools.models import (
    HostPathList,
    JailedToolConfig,
    Seconds,
    ToolFileConfig,
    resolve_host_paths,
)
from py_code_mode.tools.protocol import CallableSpec, ParameterSpec

__all__ = [
    "McpServerTool",
    "McpTool",
    "McpToolConfig",
    "McpToolSpec",
    "Transport",
    "load_mcp_tool",
]

logger = logging.getLogger(__name__)

Transport = Literal["stdio", "sse", "streamable-http"]

_STDERR_TAIL_BYTES: Final = 16 * 1024
_STDERR_EXCERPT_CHARS: Final = 1500
_CLOSE_GRACE: Final = 10.0
"""Seconds a connection may take to shut down (the SDK stops a stdio server in
at most about 6 s: stdin closed, SIGTERM, SIGKILL)."""
_STDERR_DRAIN: Final = 0.5
_MAX_LIST_PAGES: Final = 100
_PROXY_VARS: Final = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
_JAIL_HOME: Final = "/tmp"  # noqa: S108 - the jail's private tmpfs
_JAIL_KEYS: Final = ("paths", "writable_paths", "network", "allow_addresses", "jail")


# -- YAML model --------------------------------------------------------------------


class McpToolConfig(ToolFileConfig, JailedToolConfig):
    """A ``type: mcp`` tool file (``paths``/``network``/``allow_addresses``: stdio only)."""

    type: Literal["mcp"]
    transport: Transport | None = None
    """Inferred when absent: ``stdio`` with a ``command``, ``streamable-http`` with a ``url``."""
    command: str | None = Field(default=None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = Field(default=None, min_length=1)
    url: str | None = Field(default=None, min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = 60.0
    connect_timeout: Seconds = 30.0
    writable_paths: HostPathList = Field(default_factory=list)
    """Host paths a stdio server may change (bound read-write in its jail)."""
    jail: bool = True
    """Run a stdio server in the tool jail; ``false`` runs it as you, with a warning."""

    @field_validator("command", "cwd")
    @classmethod
    def _check_no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value

    @model_validator(mode="after")
    def _check_transport(self) -> Self:
        transport = self.resolved_transport()
        if transport == "stdio":
            if self.command is None:
                raise ValueError(
                    "transport stdio needs `command` (the server program to start); "
                    "for a server on the network give `url` and transport "
                    "streamable-http or sse"
                )
            unused: tuple[str, ...] = ("url", "headers")
        else:
            if self.url is None:
                raise ValueError(f"transport {transport} needs `url` (the server's endpoint)")
            unused = ("command", "args", "env", "cwd", *_JAIL_KEYS)
        wrong = [k for k in unused if k in self.model_fields_set]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)}: not used by transport {transport}; remove "
                f"{'it' if len(wrong) == 1 else 'them'}"
            )
        return self

    def resolved_transport(self) -> Transport:
        """The declared transport, or the one implied by ``command``/``url``."""
        if self.transport is not None:
            return self.transport
        if self.command is None and self.url is not None:
            return "streamable-http"
        return "stdio"

    def to_spec(
        self, *, source: Path | str | None = None, environ: Mapping[str, str]
    ) -> McpToolSpec:
        """Expand ``${VAR}`` references and resolve paths against the tool file's folder.

        Raises:
            ConfigError: A referenced variable is not set, or the expanded URL is
                not an http(s) URL.
        """
        redactor = Redactor()

        def expand(text: str, where: str) -> str:
            return expand_value(text, field=where, environ=environ, redactor=redactor)

        folder = Path(source).parent if source is not None else None
        command = self.command
        cwd = self.cwd
        if command is not None:
            command = expand(command, "command")
            if folder is not None and "/" in command and not Path(command).is_absolute():
                command = str(folder / command)
        if cwd is not None:
            cwd = expand(cwd, "cwd")
            if folder is not None and not Path(cwd).is_absolute():
                cwd = str(folder / cwd)
        paths = resolve_host_paths(self.paths, field="paths", environ=environ)
        writable = resolve_host_paths(self.writable_paths, field="writable_paths", environ=environ)
        if cwd is not None and self.jail:
            cwd = os.path.realpath(os.path.expanduser(cwd))  # as the jail binds the paths
            self._check_cwd_declared(cwd, paths + writable)
        url = self.url
        if url is not None:
            url = expand(url, "url")
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"url: expected an http:// or https:// URL, got {redactor.redact(url)!r}"
                )
        headers = expand_headers(self.headers, environ=environ, redactor=redactor)
        return McpToolSpec(
            name=self.name,
            description=self.description.strip(),
            transport=self.resolved_transport(),
            command=command,
            args=tuple(expand(a, f"args[{i}]") for i, a in enumerate(self.args)),
            env={k: expand(v, f"env.{k}") for k, v in self.env.items()},
            cwd=cwd,
            url=url,
            display_url=self.url,
            headers=headers,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            redactor=redactor,
            source=str(source) if source is not None else None,
            paths=paths,
            writable_paths=writable,
            network=self.network,
            allow_addresses=parse_networks(self.allow_addresses),
            jail=self.jail,
        )

    @staticmethod
    def _check_cwd_declared(cwd: str, declared: Sequence[str]) -> None:
        """A jailed server's working directory must be one it is allowed to see."""
        if any(cwd == root or cwd.startswith(root.rstrip("/") + "/") for root in declared):
            return
        raise ConfigError(
            f"cwd: {cwd!r} is not inside the tool's declared paths "
            f"({', '.join(declared) or 'none'}); the server runs in a jail that shows only "
            "those. Add it to `paths:` (read-only) or `writable_paths:`, drop `cwd` (the "
            "server then starts in a private /tmp), or set `jail: false`"
        )


@dataclass(frozen=True, slots=True)
class McpToolSpec:
    """Everything an :class:`McpTool` needs, validated and expanded.

    Attributes:
        display_url: The URL as written in the file (``${VAR}`` unexpanded), for messages.
        redactor: Masks expanded values in error text shown to agents.
        paths: Host paths a stdio server's jail shows read-only (resolved).
        writable_paths: Host paths its jail shows read-write (resolved).
        network: Whether a stdio server gets the network (through the egress proxy).
        jail: Whether a stdio server runs in the tool jail.
    """

    name: str
    transport: Transport
    description: str = ""
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    display_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    connect_timeout: float = 30.0
    redactor: Redactor = field(default_factory=Redactor)
    source: str | None = None
    paths: tuple[str, ...] = ()
    writable_paths: tuple[str, ...] = ()
    network: bool = False
    allow_addresses: tuple[IPNetwork, ...] = ()
    jail: bool = True

    @property
    def server(self) -> str:
        """How messages name the server: its command or URL as written."""
        if self.transport == "stdio":
            return self.redactor.redact(f"command {self.command!r}")
        return f"{self.display_url}"


# -- server tools as callables -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class McpServerTool:
    """One tool of the server, under the name agents call it by."""

    name: str
    """The Python name: ``tools.<tool>.<name>``."""
    server_name: str
    """The name the server knows it by."""
    spec: CallableSpec
    wraps_result: bool = False
    """The output schema is the SDK's ``{"result": ...}`` wrapper of a non-object value."""


def wraps_result(output_schema: Mapping[str, Any] | None) -> bool:
    """Whether an output schema only wraps a plain value under ``result``.

    The python SDK (and FastMCP) put a function's non-object return value under a
    single ``result`` key; agent code should get the value itself.
    """
    if not isinstance(output_schema, Mapping):
        return False
    if output_schema.get("x-fastmcp-wrap-result") is True:
        return True
    properties = output_schema.get("properties")
    return (
        isinstance(properties, Mapping)
        and list(properties) == ["result"]
        and list(output_schema.get("required") or []) == ["result"]
    )


def _python_name(server_name: str, taken: set[str]) -> str:
    name = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in server_name)
    if not name or not name[0].isalpha():
        name = f"tool_{name}"
    if is_keyword(name) or name in RESERVED_CALLABLES:
        name += "_"
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    return candidate


def _schema_type(schema: Any) -> str:
    if not isinstance(schema, Mapping):
        return "any"
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        return "|".join(kind)
    for combinator in ("anyOf", "oneOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return "|".join(dict.fromkeys(_schema_type(option) for option in options))
    if "$ref" in schema or "properties" in schema:
        return "object"
    if "enum" in schema:
        return "enum"
    return "any"


def parameters_from_schema(schema: Mapping[str, Any]) -> tuple[ParameterSpec, ...]:
    """Describe the ``properties`` of a JSON schema as parameters, required ones first."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return ()
    required = schema.get("required")
    required_names = set(required) if isinstance(required, list) else set()
    parameters = []
    for name, prop in properties.items():
        prop_map = prop if isinstance(prop, Mapping) else {}
        description = prop_map.get("description")
        parameters.append(
            ParameterSpec(
                name=str(name),
                type=_schema_type(prop_map),
                description=description.strip() if isinstance(description, str) else "",
                required=name in required_names,
                default=prop_map.get("default"),
            )
        )
    parameters.sort(key=lambda p: not p.required)
    return tuple(parameters)


def _server_tools(tools: Sequence[ServerTool]) -> tuple[McpServerTool, ...]:
    taken: set[str] = set()
    result = []
    for tool in tools:
        name = _python_name(tool.name, taken)
        taken.add(name)
        description = (tool.description or tool.title or "").strip()
        if name != tool.name:
            note = f"(MCP tool {tool.name!r})"
            description = f"{description} {note}" if description else note
        result.append(
            McpServerTool(
                name=name,
                server_name=tool.name,
                spec=CallableSpec(
                    name=name,
                    description=description,
                    parameters=parameters_from_schema(tool.input_schema),
                    input_schema=dict(tool.input_schema),
                ),
                wraps_result=wraps_result(tool.output_schema),
            )
        )
    return tuple(result)


# -- the connection ----------------------------------------------------------------


class _ConnectionLostError(Exception):
    """The connection broke before the call was answered; the caller may retry."""


class _ClosedError(Exception):
    """The connection was closed on purpose (``aclose``)."""


@dataclass(eq=False)
class _Call:
    name: str
    arguments: dict[str, Any]
    timeout: float
    future: asyncio.Future[ToolResult]
    scope: anyio.CancelScope | None = None


class _StderrTail(asyncio.Protocol):
    """Keeps the last bytes a stdio server wrote to stderr, for error messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _STDERR_TAIL_BYTES:
            del self._buffer[: len(self._buffer) - _STDERR_TAIL_BYTES]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def text(self) -> str:
        return self._buffer.decode("utf-8", errors="replace").strip()


def _leaf_errors(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaf_errors(inner)
    else:
        yield exc


def _describe_error(exc: BaseException) -> str:
    """A one-line account of why a connection failed, from the innermost real error."""
    leaves = [e for e in _leaf_errors(exc) if not isinstance(e, asyncio.CancelledError)]
    error = leaves[0] if leaves else exc
    if isinstance(error, FileNotFoundError):
        return f"command not found ({error.filename or error})"
    if isinstance(error, PermissionError):
        return f"command not executable ({error.filename or error})"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _Connection:
    """One MCP client session, owned by one task that serves calls from a queue."""

    def __init__(self, spec: McpToolSpec, proxy: EgressProxy | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._spec = spec
        self._proxy = proxy
        self.jailed = False
        """Whether the stdio server was started in the tool jail."""
        self._queue: asyncio.Queue[_Call | None] = asyncio.Queue()
        self._ready: asyncio.Future[tuple[McpServerTool, ...]] = loop.create_future()
        self._pending: set[_Call] = set()
        # Created here, entered by the owner task: aclose() can cancel it even before
        # the task has started.
        self._scope = anyio.CancelScope()
        self._stderr: _StderrTail | None = None
        self._stderr_pipe: asyncio.ReadTransport | None = None
        self._errlog: Any = None
        self._closing = False
        self.alive = True
        self.error: str = ""
        self._task = asyncio.create_task(self._main(), name=f"mcp tool {spec.name!r}")

    # -- used by McpTool ---------------------------------------------------------

    async def ready(self) -> tuple[McpServerTool, ...]:
        """The server's tools once connected.

        Raises:
            _ConnectionLostError: The connection could not be opened (the reason says why).
        """
        return await asyncio.shield(self._ready)

    async def call(self, name: str, arguments: dict[str, Any], timeout: float) -> ToolResult:
        """Have the owner task send one ``tools/call`` and wait for the result.

        Raises:
            _ConnectionLostError: The connection broke before an answer came.
            ToolError: The call timed out or the SDK rejected it.
        """
        if not self.alive:
            raise _ConnectionLostError(self.error or "the connection is closed")
        future: asyncio.Future[ToolResult] = asyncio.get_running_loop().create_future()
        call = _Call(name=name, arguments=arguments, timeout=timeout, future=future)
        future.add_done_callback(lambda f: self._abandon(call) if f.cancelled() else None)
        self._queue.put_nowait(call)
        return await future

    def stderr_text(self) -> str:
        """What a stdio server last wrote to stderr (empty for HTTP transports)."""
        return self._stderr.text() if self._stderr is not None else ""

    async def aclose(self) -> None:
        """Stop the owner task: in-flight calls end, the server process is stopped."""
        self._closing = True
        self.alive = False
        if not self._ready.done():
            self._scope.cancel()  # still connecting: nothing to finish gracefully
        self._queue.put_nowait(None)
        done, _ = await asyncio.wait({self._task}, timeout=_CLOSE_GRACE + 5)
        if not done:  # pragma: no cover - the SDK's own shutdown is bounded
            logger.warning("MCP tool %r: connection did not close in time", self._spec.name)
            self._task.cancel()

    # -- the owner task ----------------------------------------------------------

    def _abandon(self, call: _Call) -> None:
        if call.scope is not None:
            call.scope.cancel()

    def _lost(self, reason: str) -> None:
        if self.alive:
            self.alive = False
            self.error = reason
            self._queue.put_nowait(None)

    async def _main(self) -> None:
        failure: BaseException | None = None
        scope = self._scope
        try:
            with scope:
                scope.deadline = anyio.current_time() + self._spec.connect_timeout
                async with contextlib.AsyncExitStack() as stack:
                    client = await self._open(stack)
                    tools = await self._list_tools(client)
                    scope.deadline = math.inf
                    if not self._ready.done():
                        self._ready.set_result(tools)
                    logger.info(
                        "MCP tool %r connected to %s (%d server tools)",
                        self._spec.name,
                        self._spec.server,
                        len(tools),
                    )
                    async with anyio.create_task_group() as group:
                        while (call := await self._queue.get()) is not None:
                            group.start_soon(self._serve, client, call)
                        group.cancel_scope.cancel()
                    # Leaving the stack stops the server (or ends the HTTP session):
                    # bounded, so that a server that will not stop cannot hang aclose.
                    scope.deadline = anyio.current_time() + _CLOSE_GRACE
        except Exception as exc:  # noqa: BLE001 - any failure ends the connection; reported
            failure = exc
        finally:
            self.alive = False
            await self._close_stderr()
            self._settle(failure, timed_out=scope.cancelled_caught)

    async def _close_stderr(self) -> None:
        if self._errlog is not None:
            self._errlog.close()
        if self._stderr is not None and not self._closing:
            # The server is stopped: read what it wrote last (a traceback, usually)
            # before closing, it is the useful part of an error message.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STDERR_DRAIN):
                    await asyncio.shield(self._stderr.closed)
        if self._stderr_pipe is not None:
            self._stderr_pipe.close()

    def _settle(self, failure: BaseException | None, *, timed_out: bool) -> None:
        """Fail whatever is still waiting, now that the owner task ends."""
        if not self._ready.done():
            if self._closing:
                reason = "the tool was closed"
            elif failure is not None:
                reason = _describe_error(failure)
            elif timed_out:
                reason = f"no answer within connect_timeout ({self._spec.connect_timeout:g} s)"
            else:
                reason = "the connection ended during the handshake"
            self.error = reason
            self._ready.set_exception(_ConnectionLostError(reason))
            self._ready.exception()  # retrieved here; callers get it through ready()
        if failure is not None and not self.error:
            self.error = _describe_error(failure)
        lost: BaseException = (
            _ClosedError("the tool was closed")
            if self._closing
            else _ConnectionLostError(self.error or "the connection ended")
        )
        waiting = list(self._pending)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                waiting.append(item)
        for call in waiting:
            if not call.future.done():
                call.future.set_exception(lost)
        self._pending.clear()

    async def _open(self, stack: contextlib.AsyncExitStack) -> McpClient:
        spec = self._spec
        target: StdioTarget | HttpTarget
        if spec.transport == "stdio":
            target = await self._stdio_target()
        else:
            assert spec.url is not None
            target = HttpTarget(
                transport=spec.transport,
                url=spec.url,
                headers=spec.headers,
                connect_timeout=spec.connect_timeout,
                call_timeout=spec.timeout,
            )
        # The SDK (1.x or 2.x) is imported only here, when a server connects.
        return await open_client(stack, target, name="py-code-mode", version=__version__)

    async def _stdio_target(self) -> StdioTarget:
        spec = self._spec
        assert spec.command is not None
        read_fd, write_fd = os.pipe()
        errlog = os.fdopen(write_fd, "w", encoding="utf-8", errors="replace")
        reader = os.fdopen(read_fd, "rb", buffering=0)
        try:
            loop = asyncio.get_running_loop()
            pipe, tail = await loop.connect_read_pipe(_StderrTail, reader)
        except BaseException:
            errlog.close()
            reader.close()
            raise
        # Both are closed by _close_stderr() when the owner task ends.
        self._errlog, self._stderr_pipe, self._stderr = errlog, pipe, tail
        env = dict(spec.env)
        argv = [spec.command, *spec.args]
        if spec.jail:
            argv = await jailed_tool_argv(
                argv,
                paths=spec.paths,
                writable=spec.writable_paths,
                egress_socket=self._proxy.unix_socket if self._proxy else None,
                cwd=spec.cwd,
            )
            self.jailed = len(argv) != len(spec.args) + 1
        if self._proxy is not None:
            if not self.jailed:  # jailed, the launcher points them at its forwarder
                env.update(dict.fromkeys(_PROXY_VARS, await self._proxy.url()))
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
        if self.jailed:
            env.setdefault("HOME", _JAIL_HOME)  # the host's home is not in the jail
        return StdioTarget(command=argv[0], args=argv[1:], env=env, cwd=spec.cwd, errlog=errlog)

    async def _list_tools(self, client: McpClient) -> tuple[McpServerTool, ...]:
        tools: list[ServerTool] = []
        cursor: str | None = None
        for _ in range(_MAX_LIST_PAGES):
            page, cursor = await client.list_tools(cursor)
            tools.extend(page)
            if cursor is None:
                break
        return _server_tools(tools)

    async def _serve(self, client: McpClient, call: _Call) -> None:
        if call.future.done():  # the caller gave up while the call was queued
            return
        self._pending.add(call)
        outcome: ToolResult | BaseException | None = None
        with anyio.CancelScope() as call.scope:
            try:
                with anyio.fail_after(call.timeout):
                    outcome = await client.call_tool(call.name, call.arguments)
            except TimeoutError:
                outcome = ToolError(f"no answer within timeout ({call.timeout:g} s)")
            except ConnectionClosedError:
                self._lost("the server closed the connection")
                outcome = _ConnectionLostError(self.error)
            except ServerError as exc:
                outcome = ToolError(f"the server answered with error {exc.code}: {exc}")
            except (
                anyio.ClosedResourceError,
                anyio.BrokenResourceError,
                anyio.EndOfStream,
                OSError,
            ) as exc:
                self._lost(_describe_error(exc))
                outcome = _ConnectionLostError(self.error)
            except Exception as exc:  # noqa: BLE001 - e.g. a result that fails validation
                outcome = ToolError(f"the call failed: {_describe_error(exc)}")
        self._pending.discard(call)
        if outcome is None:  # the caller gave up (its future is cancelled)
            return
        if call.future.done():
            return
        if isinstance(outcome, BaseException):
            call.future.set_exception(outcome)
        else:
            call.future.set_result(outcome)


# -- the adapter -------------------------------------------------------------------


class McpTool:
    """An MCP server exposed as a tool, one callable per server tool (``ToolAdapter``).

    Build one from a YAML mapping with :meth:`from_mapping` (or :func:`load_mcp_tool`).
    """

    def __init__(self, spec: McpToolSpec) -> None:
        self.name = spec.name
        self.description = spec.description
        self.kind = "mcp"
        self.spec = spec
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._proxy = (
            EgressProxy(AddressPolicy(spec.allow_addresses, tool=spec.name))
            if spec.network and spec.transport == "stdio"
            else None
        )
        if spec.transport == "stdio" and not spec.jail:
            logger.warning(
                "MCP tool %r runs its server WITHOUT a jail (`jail: false` in %s): it sees "
                "all your files and the network",
                spec.name,
                spec.source or "its tool file",
            )

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> McpTool:
        """Validate a parsed YAML mapping, expand ``${VAR}`` references and build the tool.

        Nothing is started: the server is contacted on first use.

        Args:
            data: The YAML document.
            source: The file it came from: relative ``command``/``cwd`` paths are
                taken relative to its folder.
            environ: Where ``${VAR}`` values come from; ``os.environ`` by default.

        Raises:
            pydantic.ValidationError: The mapping does not describe a valid MCP tool.
            ConfigError: A referenced environment variable is not set.
        """
        config = McpToolConfig.model_validate(data)
        return cls(
            config.to_spec(source=source, environ=os.environ if environ is None else environ)
        )

    def __repr__(self) -> str:
        return f"McpTool(name={self.name!r}, transport={self.spec.transport!r})"

    async def callables(self) -> list[CallableSpec]:
        """The server's tools (connects on first use).

        Raises:
            ToolError: The server cannot be reached.
        """
        connection = await self._connect()
        redact = self.spec.redactor.redact_data
        # A server may echo a credential into a description or schema: mask it there too.
        return [
            replace(
                tool.spec,
                description=redact(tool.spec.description),
                input_schema=redact(tool.spec.input_schema),
            )
            for tool in await connection.ready()
        ]

    async def call(self, callable_name: str | None, args: Mapping[str, Any]) -> Any:
        """Call one tool of the server and return its structured content, else its text.

        Raises:
            ToolNotFoundError: The server has no such tool.
            ToolError: Bad arguments, the server cannot be reached, the call timed
                out, or the tool reported an error (its message is included).
        """
        if callable_name is None:
            raise ToolError(
                f"tool '{self.name}' is an MCP server: call one of its tools as "
                f"tools.{self.name}.<tool>(...); tools.{self.name}.describe() lists them",
                tool=self.name,
            )
        where = f"tool '{self.name}' MCP tool '{callable_name}'"
        arguments = self._check_arguments(where, args)
        for attempt in (1, 2):
            connection = await self._connect()
            tool = self._find(callable_name, await connection.ready())
            where = f"tool '{self.name}' MCP tool '{tool.server_name}'"
            self._check_required(where, tool, arguments)
            try:
                result = await connection.call(tool.server_name, arguments, self.spec.timeout)
            except _ConnectionLostError as exc:
                await self._discard(connection)
                if attempt == 2:
                    raise self._error(
                        f"{where}: lost the connection to the MCP server twice: {exc}",
                        connection,
                    ) from None
                logger.info(
                    "%s: connection lost (%s); reconnecting",
                    where,
                    self.spec.redactor.redact(str(exc)),
                )
            except _ClosedError:
                raise ToolError(f"{where}: the tool was closed", tool=self.name) from None
            except ToolError as exc:
                message = self.spec.redactor.redact(f"{where}: {exc}")
                raise ToolError(message, tool=self.name) from None
            else:
                return self.spec.redactor.redact_data(
                    self._value(where, result, unwrap=tool.wraps_result)
                )
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the connection and stop the server process. Idempotent."""
        self._closed = True
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()
        if self._proxy is not None:
            await self._proxy.aclose()

    # -- internals ---------------------------------------------------------------

    async def _connect(self) -> _Connection:
        """The live connection, opened if needed (concurrent callers share one)."""
        async with self._lock:
            if self._closed:
                raise ToolError(f"tool '{self.name}' was closed", tool=self.name)
            connection = self._connection
            if connection is None or not connection.alive:
                if connection is not None:
                    await connection.aclose()
                connection = self._connection = _Connection(self.spec, self._proxy)
        try:
            await connection.ready()
        except _ConnectionLostError as exc:
            await self._discard(connection)
            message = (
                f"tool '{self.name}': cannot connect to the MCP server ({self.spec.server}"
                f" over {self.spec.transport}): {exc}"
            )
            if connection.jailed:
                message += f"\n{_jail_hint(self.spec)}"
            raise self._error(message, connection) from None
        return connection

    async def _discard(self, connection: _Connection) -> None:
        if self._connection is connection:
            self._connection = None
        await connection.aclose()

    def _error(self, message: str, connection: _Connection) -> ToolError:
        redact = self.spec.redactor.redact
        stderr = redact(connection.stderr_text())
        if stderr:
            excerpt = stderr[-_STDERR_EXCERPT_CHARS:]
            message = f"{message}\nserver stderr (last lines):\n{excerpt}"
        return ToolError(redact(message), tool=self.name, stderr=stderr)

    def _find(self, callable_name: str, tools: Sequence[McpServerTool]) -> McpServerTool:
        for tool in tools:
            if callable_name in (tool.name, tool.server_name):
                return tool
        available = ", ".join(t.name for t in tools) or "none"
        raise ToolNotFoundError(
            f"tool '{self.name}' (an MCP server) has no tool {callable_name!r}; "
            f"available: {available}",
            tool=self.name,
        )

    def _check_arguments(self, where: str, args: Mapping[str, Any]) -> dict[str, Any]:
        arguments = dict(args)  # a dict of str keys: checked once, by the command table
        require_json(where, arguments, "arguments", tool=self.name)
        return arguments

    def _check_required(self, where: str, tool: McpServerTool, arguments: dict[str, Any]) -> None:
        # The server validates too; checking here gives agents a plainer message.
        parameters = tool.spec.parameters
        missing = [p.name for p in parameters if p.required and arguments.get(p.name) is None]
        reject_missing(where, missing, tool=self.name, parameters=[p.name for p in parameters])

    def _value(self, where: str, result: ToolResult, *, unwrap: bool = False) -> Any:
        text = result.text
        if result.is_error:
            message = self.spec.redactor.redact(text) or "the tool reported an error"
            raise ToolError(f"{where} failed: {message}", tool=self.name)
        structured = result.structured
        if structured is not None:
            if unwrap and isinstance(structured, Mapping) and list(structured) == ["result"]:
                return structured["result"]
            return structured
        return text if result.has_content else None


def _jail_hint(spec: McpToolSpec) -> str:
    """What a server that failed in its jail could see, and how to open the jail."""
    network = (
        "reaches the network through the egress proxy (public addresses only, plus "
        "`allow_addresses`)"
        if spec.network
        else "has no network"
    )
    return (
        "The server ran in a bubblewrap jail: it sees the system directories, its own "
        f"program and only the paths its tool file declares; HOME is a private /tmp; it "
        f"{network}. Declare what it needs: `paths: [DIR]` (read-only), "
        "`writable_paths: [DIR]`, `network: true`; or run it unjailed with `jail: false` "
        "in the tool file (PY_CODE_MODE_TOOL_JAIL=off does that for every tool)."
    )


def load_mcp_tool(data: Mapping[str, Any], source: Path) -> McpTool:
    """Loader registered for ``type: mcp`` in the tool registry.

    Raises:
        pydantic.ValidationError: The mapping does not describe a valid MCP tool.
        ConfigError: A referenced environment variable is not set, or no mcp SDK
            (>= 1.21) is installed.
    """
    from py_code_mode._private.mcp_sdk import require_mcp_client

    require_mcp_client(f"the MCP tool in {source}")
    return McpTool.from_mapping(data, source=source)
