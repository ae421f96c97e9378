"""The MCP server: tools that expose a :class:`~py_code_mode.Session` to a model.

Tool errors follow one rule: a problem in the *agent's code* is a normal
``run_code`` result (the model reads the traceback and fixes its code), while a
bad *call* (wrong argument, unknown workflow, invalid package spec) is a tool error
with a message that says what to do instead. Neither stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from py_code_mode import __version__
from py_code_mode._private.commands import COMMANDS
from py_code_mode._private.safe_text import safe_data, safe_text
from py_code_mode.errors import PyCodeModeError
from py_code_mode.mcp_server.access import auth_settings, build_pool, describe_access, tenancy_for
from py_code_mode.mcp_server.approval import ClientApprover
from py_code_mode.mcp_server.arguments import argument_checker
from py_code_mode.mcp_server.descriptions import (
    DESCRIPTIONS,
    INSTRUCTIONS,
    run_code_description,
    slim_tool_list,
)
from py_code_mode.mcp_server.formatting import (
    DEFAULT_MAX_CHARS,
    ArtifactListOutput,
    ArtifactOutput,
    DeletedOutput,
    DepChangeOutput,
    DepsOutput,
    ResetOutput,
    RunCodeOutput,
    SearchOutput,
    ToolListOutput,
    WorkflowListOutput,
    WorkflowOutput,
    artifact_payload,
    format_artifacts,
    format_deps,
    format_tools,
    format_workflow,
    format_workflows,
    workflow_line,
)
from py_code_mode.mcp_server.options import ServerOptions
from py_code_mode.mcp_server.problems import format_problems, tool_problems, workflow_problems
from py_code_mode.mcp_server.progress import relay_output
from py_code_mode.mcp_server.resources import ArtifactResources
from py_code_mode.mcp_server.run_reply import OutputSaves, run_reply
from py_code_mode.mcp_server.sessions import SessionPool, SessionStartError

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["MAX_HTTP_SESSIONS", "MAX_RUN_TIMEOUT", "build_server", "run_code_description", "serve"]

logger = logging.getLogger(__name__)

MAX_RUN_TIMEOUT = 3600.0
_NO_LIMIT = 1e9
"""What ``timeout=0`` becomes: no limit, as ``--timeout 0`` on the command line."""
MAX_HTTP_SESSIONS = 64
"""Concurrent HTTP client sessions; each may own a worker process, so they are capped."""
_T = TypeVar("_T")


def _hints(command: str) -> ToolAnnotations:
    """The MCP hints of a tool: the flags of the command-table entry it runs."""
    entry = COMMANDS[command]
    return ToolAnnotations(
        read_only_hint=entry.read_only,
        destructive_hint=None if entry.read_only else entry.destructive,
        open_world_hint=entry.open_world,
    )


Name = Annotated[str, Field(description="workflow name, e.g. 'fetch_json'", min_length=1)]
Query = Annotated[
    str, Field(description="what you want to do, in a few words", min_length=1, max_length=1000)
]


def _result(text: str, data: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=data.model_dump(mode="json"),
    )


async def _call(awaitable: Awaitable[_T]) -> _T:
    """Await a library call, turning library errors into tool errors for the model.

    What comes back is made UTF-8 safe here (lone surrogates escaped): a stored str
    artifact may hold them, and one would otherwise break the transport.
    """
    try:
        return cast("_T", safe_data(await awaitable))
    except PyCodeModeError as exc:
        raise ToolError(safe_text(str(exc))) from exc


@contextmanager
def _sdk_logging_left_alone() -> Iterator[None]:
    """Keep the SDK's server constructor from configuring logging.

    It calls ``logging.basicConfig`` with a ``rich`` handler, which imports rich
    (about a tenth of the server's start-up) only to be ignored when the entry point
    has configured logging already; and a library must not configure it otherwise.
    """
    module = sys.modules.get(MCPServer.__module__)
    original = getattr(module, "configure_logging", None)
    if module is None or original is None:
        yield
        return
    module.configure_logging = _no_logging_setup  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.configure_logging = original  # type: ignore[attr-defined]


def _no_logging_setup(*args: object, **kwargs: object) -> None:
    return None


def build_server(
    options: ServerOptions,
    *,
    pool: SessionPool | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> MCPServer[Any]:
    """An MCP server whose tools run against sessions built from ``options``.

    Args:
        options: Library, executor and transport settings.
        pool: Where sessions live; one made from ``options`` when omitted. The
            server closes it when it stops.
        max_chars: Characters kept per result field before truncation.
    """
    tenancy = tenancy_for(options)
    if pool is None:
        pool = build_pool(options, tenancy)

    saves = OutputSaves()

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            with anyio.CancelScope(shield=True):
                await saves.wait()
                await pool.aclose()

    async def warm_after_handshake(
        ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # Start the worker once the client has its initialize answer, not before.
        result = await call_next(ctx)
        if ctx.method in ("notifications/initialized", "server/discover"):
            pool.warm(ctx)
        return result

    with _sdk_logging_left_alone():
        server: MCPServer[Any] = MCPServer(
            "py-code-mode",
            title="py-code-mode",
            version=__version__,
            instructions=INSTRUCTIONS,
            lifespan=lifespan,
            log_level=options.log_level,
            middleware=[warm_after_handshake],
            **auth_settings(options, tenancy),
        )

    async def acquire(ctx: Context[Any, Any]) -> tuple[Session, asyncio.Lock]:
        try:
            return await pool.get(ctx.request_context)
        except SessionStartError as exc:
            raise ToolError(str(exc)) from exc

    async def session_of(ctx: Context[Any, Any]) -> Session:
        return (await acquire(ctx))[0]

    def library_of(ctx: Context[Any, Any]) -> Session:
        # Library calls must not wait for a worker start or an environment build.
        try:
            return pool.library(ctx.request_context)
        except SessionStartError as exc:
            raise ToolError(str(exc)) from exc

    resources = ArtifactResources(pool.library, before_read=saves.wait)

    @server.tool(
        description=run_code_description(
            allow_runtime_deps=options.allow_runtime_deps, timeout=options.timeout
        ),
        annotations=_hints("session.run"),
    )
    async def run_code(
        code: Annotated[str, Field(description="Python source to run")],
        ctx: Context[Any, Any],
        timeout: Annotated[
            float | None,
            Field(
                description="seconds before the run is interrupted; 0 for no limit",
                ge=0,
                le=MAX_RUN_TIMEOUT,
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RunCodeOutput]:
        session, lock = await acquire(ctx)
        limit = _NO_LIMIT if timeout == 0 else timeout or options.timeout
        # Calls marked `confirm` ask the client whose run_code is in progress.
        approver = session.approve if isinstance(session.approve, ClientApprover) else None
        async with lock, relay_output(ctx):
            await saves.wait()
            with approver.asking(ctx) if approver else nullcontext():
                result = await _call(session.run(code, timeout=limit))
        reply = await run_reply(session, result, saves=saves, max_chars=max_chars)
        await resources.notify_changes(ctx.request_context)
        return reply

    @server.tool(description=DESCRIPTIONS["reset_session"], annotations=_hints("session.reset"))
    async def reset_session(ctx: Context[Any, Any]) -> Annotated[CallToolResult, ResetOutput]:
        session, lock = await acquire(ctx)
        async with lock:
            await _call(session.reset())
        return _result("Session reset: all variables are cleared.", ResetOutput(reset=True))

    @server.tool(description=DESCRIPTIONS["list_tools"], annotations=_hints("tools.list"))
    async def list_tools(ctx: Context[Any, Any]) -> Annotated[CallToolResult, ToolListOutput]:
        library = library_of(ctx)
        tools = await _call(library.list_tools())
        problems = await tool_problems(library)
        text = "\n\n".join(filter(None, [format_tools(tools), format_problems("tool", problems)]))
        return _result(text, ToolListOutput(tools=tools, problems=problems))

    @server.tool(description=DESCRIPTIONS["search_tools"], annotations=_hints("tools.search"))
    async def search_tools(
        query: Query,
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(description="maximum results", ge=1, le=50)] = 10,
    ) -> Annotated[CallToolResult, SearchOutput]:
        hits = await _call(library_of(ctx).search_tools(query, limit))
        return _result(format_tools(hits, query=query), SearchOutput(query=query, results=hits))

    @server.tool(description=DESCRIPTIONS["list_workflows"], annotations=_hints("workflows.list"))
    async def list_workflows(
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, WorkflowListOutput]:
        library = library_of(ctx)
        workflows = await _call(library.list_workflows())
        problems = workflow_problems(library)
        text = "\n\n".join(
            filter(None, [format_workflows(workflows), format_problems("workflow", problems)])
        )
        return _result(text, WorkflowListOutput(workflows=workflows, problems=problems))

    @server.tool(
        description=DESCRIPTIONS["search_workflows"], annotations=_hints("workflows.search")
    )
    async def search_workflows(
        query: Query,
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(description="maximum results", ge=1, le=50)] = 5,
    ) -> Annotated[CallToolResult, SearchOutput]:
        hits = await _call(library_of(ctx).search_workflows(query, limit))
        return _result(format_workflows(hits, query=query), SearchOutput(query=query, results=hits))

    @server.tool(description=DESCRIPTIONS["get_workflow"], annotations=_hints("workflows.get"))
    async def get_workflow(
        name: Name, ctx: Context[Any, Any]
    ) -> Annotated[CallToolResult, WorkflowOutput]:
        record = await _call(library_of(ctx).get_workflow(name))
        if record is None:
            raise ToolError(f"no workflow named {name!r}; list_workflows shows what exists")
        return _result(format_workflow(record, max_chars), WorkflowOutput(**record))

    @server.tool(
        description=DESCRIPTIONS["create_workflow"], annotations=_hints("workflows.create")
    )
    async def create_workflow(
        name: Annotated[
            str, Field(description="a Python identifier, e.g. 'fetch_json'", min_length=1)
        ],
        source: Annotated[
            str, Field(description="Python source defining def run(...)", min_length=1)
        ],
        ctx: Context[Any, Any],
        description: Annotated[
            str, Field(description="one sentence on what it does (default: the docstring)")
        ] = "",
    ) -> Annotated[CallToolResult, WorkflowOutput]:
        record = await _call(library_of(ctx).add_workflow(name, source, description))
        text = (
            f"Saved workflow {workflow_line(record)}\n"
            f"Invoke it in run_code: workflows.{record['name']}(...)"
        )
        return _result(text, WorkflowOutput(**record))

    @server.tool(
        description=DESCRIPTIONS["delete_workflow"], annotations=_hints("workflows.delete")
    )
    async def delete_workflow(
        name: Name, ctx: Context[Any, Any]
    ) -> Annotated[CallToolResult, DeletedOutput]:
        deleted = await _call(library_of(ctx).remove_workflow(name))
        if not deleted:
            raise ToolError(f"no workflow named {name!r}; list_workflows shows what exists")
        return _result(f"Deleted workflow {name}.", DeletedOutput(name=name, deleted=True))

    @server.tool(description=DESCRIPTIONS["list_artifacts"], annotations=_hints("artifacts.list"))
    async def list_artifacts(
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, ArtifactListOutput]:
        artifacts = await _call(library_of(ctx).list_artifacts())
        return _result(format_artifacts(artifacts), ArtifactListOutput(artifacts=artifacts))

    @server.tool(description=DESCRIPTIONS["load_artifact"], annotations=_hints("artifacts.load"))
    async def load_artifact(
        name: Annotated[str, Field(description="artifact name, e.g. 'report.json'", min_length=1)],
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, ArtifactOutput]:
        await saves.wait()
        data = await _call(library_of(ctx).load_artifact(name))
        text, payload = artifact_payload(name, data, max_chars)
        return _result(text, payload)

    @server.tool(description=DESCRIPTIONS["list_deps"], annotations=_hints("deps.list"))
    async def list_deps(ctx: Context[Any, Any]) -> Annotated[CallToolResult, DepsOutput]:
        deps = await _call(library_of(ctx).list_deps())
        text = format_deps(deps, allow_runtime_deps=options.allow_runtime_deps)
        return _result(text, DepsOutput(deps=deps))

    if options.allow_runtime_deps:

        @server.tool(description=DESCRIPTIONS["add_dep"], annotations=_hints("deps.add"))
        async def add_dep(
            spec: Annotated[str, Field(description="requirement, e.g. 'requests>=2.31'")],
            ctx: Context[Any, Any],
        ) -> Annotated[CallToolResult, DepChangeOutput]:
            outcome = await _call((await session_of(ctx)).add_dep(spec))
            spec_out = str(outcome.get("spec", spec))
            output = str(outcome.get("output", ""))
            return _result(
                f"Installed {spec_out}.",
                DepChangeOutput(spec=spec_out, changed=True, output=output),
            )

        @server.tool(description=DESCRIPTIONS["remove_dep"], annotations=_hints("deps.remove"))
        async def remove_dep(
            spec: Annotated[str, Field(description="package name, e.g. 'requests'")],
            ctx: Context[Any, Any],
        ) -> Annotated[CallToolResult, DepChangeOutput]:
            removed = await _call((await session_of(ctx)).remove_dep(spec))
            if not removed:
                raise ToolError(f"{spec!r} is not in the deps list; list_deps shows it")
            return _result(f"Removed {spec}.", DepChangeOutput(spec=spec, changed=True))

    resources.register(server)
    slim_tool_list(server)
    server.middleware.append(argument_checker(server))
    return server


async def serve(options: ServerOptions) -> None:
    """Serve until the client disconnects (stdio) or the process is told to stop."""
    tenancy = tenancy_for(options)
    pool = build_pool(options, tenancy)
    server = build_server(options, pool=pool)
    if options.transport == "http":
        logger.warning("access: %s", describe_access(options, tenancy))
        import uvicorn  # only the HTTP transport needs it

        app = server.streamable_http_app(host=options.host, max_sessions=MAX_HTTP_SESSIONS)
        # log_config=None: uvicorn's records go through the stderr handler the entry
        # point configured, instead of uvicorn's own handlers (which print to stdout).
        config = uvicorn.Config(
            app,
            host=options.host,
            port=options.port,
            log_config=None,
            log_level=options.log_level.lower(),
            lifespan="on",
        )
        await uvicorn.Server(config).serve()
        return
    await _serve_stdio(server, pool)


async def _serve_stdio(server: MCPServer[Any], pool: SessionPool) -> None:
    """Serve stdio until stdin closes, or until SIGTERM/SIGINT.

    On a signal the sessions are closed (so no worker outlives the server) and the
    process exits at once: the SDK reads stdin on a thread that cannot be
    interrupted, so waiting for an orderly unwind would hang until the client
    closed the pipe.
    """
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    serving = asyncio.ensure_future(server.run_stdio_async())
    stopped = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():
        stopped.cancel()
        serving.result()
        return
    logger.info("stopping on signal %s; closing sessions", signal.Signals(received[0]).name)
    await pool.aclose()
    logging.shutdown()
    os._exit(130 if received[0] == signal.SIGINT else 0)
