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
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from py_code_mode import __version__
from py_code_mode._private.safe_text import safe_data, safe_text
from py_code_mode.errors import PyCodeModeError
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
    format_run_result,
    format_tools,
    format_workflow,
    format_workflows,
    workflow_line,
)
from py_code_mode.mcp_server.options import ServerOptions
from py_code_mode.mcp_server.sessions import SessionPool, SessionStartError

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["MAX_HTTP_SESSIONS", "MAX_RUN_TIMEOUT", "build_server", "run_code_description", "serve"]

logger = logging.getLogger(__name__)

MAX_RUN_TIMEOUT = 3600.0
MAX_HTTP_SESSIONS = 64
"""Concurrent HTTP client sessions; each may own a worker process, so they are capped."""
_T = TypeVar("_T")

_READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
_DELETES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)

Name = Annotated[str, Field(description="workflow name, e.g. 'fetch_json'", min_length=1)]
Query = Annotated[
    str, Field(description="what you want to do, in a few words", min_length=1, max_length=1000)
]


def run_code_description(*, allow_runtime_deps: bool, timeout: float | None) -> str:
    """The ``run_code`` description: the namespaces and the workflow-first habit."""
    deps = (
        "`deps.list()`, `deps.add('pandas>=2')`, `deps.remove(name)`"
        if allow_runtime_deps
        else "`deps.list()` (installing packages is disabled on this server)"
    )
    limit = f" Each call may take up to {timeout:g} s unless you pass `timeout`." if timeout else ""
    return (
        "Run Python in a persistent session: variables, imports and functions stay "
        "defined between calls (until reset_session). Returns the last expression's "
        "value (like a REPL), printed output, and the traceback if the code raised. "
        f"Top-level `await` works.{limit}\n\n"
        "Predefined namespaces:\n"
        "- `tools`: call configured tools as functions, e.g. `tools.curl.get(url=...)`; "
        "`tools.list()`, `tools.search('query')`.\n"
        "- `workflows`: saved, reusable recipes: `workflows.search('query')`, "
        "`workflows.<name>(**kwargs)`, `workflows.get(name)`, "
        "`workflows.create(name, source, description)` where source defines `def run(...)`.\n"
        "- `artifacts`: persistent data shared across sessions: "
        "`artifacts.save(name, data, description=...)`, `artifacts.load(name)`, "
        "`artifacts.list()`.\n"
        f"- `deps`: Python packages: {deps}.\n\n"
        "Work workflow-first: 1) search for a workflow that does the task "
        "(search_workflows or `workflows.search`) and invoke it if one fits; "
        "2) otherwise write the code here, and once it works save it with "
        "`workflows.create(...)` (or create_workflow) so the next task can reuse it."
    )


_INSTRUCTIONS = (
    "A persistent Python environment. Use run_code to execute Python; it has the "
    "namespaces tools, workflows, artifacts and deps. Before writing code for a task, "
    "search_workflows for an existing recipe and invoke it from run_code; after solving "
    "something new, save it with create_workflow so it can be reused."
)


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
    if pool is None:
        pool = SessionPool(options.make_session, per_connection=options.transport == "http")

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            with anyio.CancelScope(shield=True):
                await pool.aclose()

    async def warm_after_handshake(
        ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # Start the worker once the client has its initialize answer, not before.
        result = await call_next(ctx)
        if ctx.method in ("notifications/initialized", "server/discover"):
            pool.warm(ctx)
        return result

    server: MCPServer[Any] = MCPServer(
        "py-code-mode",
        title="py-code-mode",
        version=__version__,
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
        log_level=options.log_level,
        middleware=[warm_after_handshake],
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

    @server.tool(
        description=run_code_description(
            allow_runtime_deps=options.allow_runtime_deps, timeout=options.timeout
        ),
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True),
    )
    async def run_code(
        code: Annotated[str, Field(description="Python source to run")],
        ctx: Context[Any, Any],
        timeout: Annotated[
            float | None,
            Field(
                description="seconds before the run is interrupted (default: the server's)",
                gt=0,
                le=MAX_RUN_TIMEOUT,
            ),
        ] = None,
    ) -> Annotated[CallToolResult, RunCodeOutput]:
        session, lock = await acquire(ctx)
        async with lock:
            result = await session.run(code, timeout=timeout or options.timeout)
        text, data = format_run_result(result, max_chars)
        return _result(text, data)

    @server.tool(
        description="Clear the variables of your run_code session. Workflows, artifacts "
        "and installed packages are kept.",
        annotations=_DELETES,
    )
    async def reset_session(ctx: Context[Any, Any]) -> Annotated[CallToolResult, ResetOutput]:
        session, lock = await acquire(ctx)
        async with lock:
            await _call(session.reset())
        return _result("Session reset: all variables are cleared.", ResetOutput(reset=True))

    @server.tool(
        description="List the configured tools and their callables (call them in run_code "
        "as tools.<tool>.<callable>(...)).",
        annotations=_READ_ONLY,
    )
    async def list_tools(ctx: Context[Any, Any]) -> Annotated[CallToolResult, ToolListOutput]:
        tools = await _call(library_of(ctx).list_tools())
        return _result(format_tools(tools), ToolListOutput(tools=tools))

    @server.tool(description="Find tools for a task, best match first.", annotations=_READ_ONLY)
    async def search_tools(
        query: Query,
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(description="maximum results", ge=1, le=50)] = 10,
    ) -> Annotated[CallToolResult, SearchOutput]:
        hits = await _call(library_of(ctx).search_tools(query, limit))
        return _result(format_tools(hits, query=query), SearchOutput(query=query, results=hits))

    @server.tool(
        description="List saved workflows (reusable recipes) with their parameters.",
        annotations=_READ_ONLY,
    )
    async def list_workflows(
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, WorkflowListOutput]:
        workflows = await _call(library_of(ctx).list_workflows())
        return _result(format_workflows(workflows), WorkflowListOutput(workflows=workflows))

    @server.tool(
        description="Find saved workflows for a task, best match first. Do this before "
        "writing new code; invoke a match in run_code as workflows.<name>(...).",
        annotations=_READ_ONLY,
    )
    async def search_workflows(
        query: Query,
        ctx: Context[Any, Any],
        limit: Annotated[int, Field(description="maximum results", ge=1, le=50)] = 5,
    ) -> Annotated[CallToolResult, SearchOutput]:
        hits = await _call(library_of(ctx).search_workflows(query, limit))
        return _result(format_workflows(hits, query=query), SearchOutput(query=query, results=hits))

    @server.tool(description="Show one workflow with its source code.", annotations=_READ_ONLY)
    async def get_workflow(
        name: Name, ctx: Context[Any, Any]
    ) -> Annotated[CallToolResult, WorkflowOutput]:
        record = await _call(library_of(ctx).get_workflow(name))
        if record is None:
            raise ToolError(f"no workflow named {name!r}; list_workflows shows what exists")
        return _result(format_workflow(record, max_chars), WorkflowOutput(**record))

    @server.tool(
        description="Save a reusable workflow. `source` is Python defining `run(...)` (sync "
        "or async); its parameters and docstring describe it. It may use tools, workflows, "
        "artifacts and deps. Replaces a workflow of the same name. Invoke it in run_code "
        "as workflows.<name>(...).",
        annotations=_WRITES,
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

    @server.tool(description="Delete a saved workflow.", annotations=_DELETES)
    async def delete_workflow(
        name: Name, ctx: Context[Any, Any]
    ) -> Annotated[CallToolResult, DeletedOutput]:
        deleted = await _call(library_of(ctx).remove_workflow(name))
        if not deleted:
            raise ToolError(f"no workflow named {name!r}; list_workflows shows what exists")
        return _result(f"Deleted workflow {name}.", DeletedOutput(name=name, deleted=True))

    @server.tool(
        description="List stored artifacts (persistent data saved with artifacts.save).",
        annotations=_READ_ONLY,
    )
    async def list_artifacts(
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, ArtifactListOutput]:
        artifacts = await _call(library_of(ctx).list_artifacts())
        return _result(format_artifacts(artifacts), ArtifactListOutput(artifacts=artifacts))

    @server.tool(
        description="Read a stored artifact: text as-is, JSON as data, bytes as base64.",
        annotations=_READ_ONLY,
    )
    async def load_artifact(
        name: Annotated[str, Field(description="artifact name, e.g. 'report.json'", min_length=1)],
        ctx: Context[Any, Any],
    ) -> Annotated[CallToolResult, ArtifactOutput]:
        data = await _call(library_of(ctx).load_artifact(name))
        text, payload = artifact_payload(name, data, max_chars)
        return _result(text, payload)

    @server.tool(
        description="List the Python packages of the execution environment (as persisted).",
        annotations=_READ_ONLY,
    )
    async def list_deps(ctx: Context[Any, Any]) -> Annotated[CallToolResult, DepsOutput]:
        deps = await _call(library_of(ctx).list_deps())
        text = format_deps(deps, allow_runtime_deps=options.allow_runtime_deps)
        return _result(text, DepsOutput(deps=deps))

    if options.allow_runtime_deps:

        @server.tool(
            description="Install a Python package into the execution environment and keep "
            "it listed, e.g. 'pandas' or 'pandas>=2,<3'. Only plain requirements from the "
            "package index are accepted.",
            annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True),
        )
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

        @server.tool(
            description="Uninstall a Python package and drop it from the list.",
            annotations=_DELETES,
        )
        async def remove_dep(
            spec: Annotated[str, Field(description="package name, e.g. 'requests'")],
            ctx: Context[Any, Any],
        ) -> Annotated[CallToolResult, DepChangeOutput]:
            removed = await _call((await session_of(ctx)).remove_dep(spec))
            if not removed:
                raise ToolError(f"{spec!r} is not in the deps list; list_deps shows it")
            return _result(f"Removed {spec}.", DepChangeOutput(spec=spec, changed=True))

    return server


async def serve(options: ServerOptions) -> None:
    """Serve until the client disconnects (stdio) or the process is told to stop."""
    pool = SessionPool(options.make_session, per_connection=options.transport == "http")
    server = build_server(options, pool=pool)
    if options.transport == "http":
        if options.host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning(
                "serving on %s without authentication: anyone who can reach this port "
                "can run code; put it behind an authenticating proxy",
                options.host,
            )
        import uvicorn

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
