"""The ``py-code-mode`` command: run code, manage the library, serve MCP, diagnose."""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast, get_type_hints

import typer

from py_code_mode import __version__
from py_code_mode._private.safe_text import safe_data, safe_text
from py_code_mode.cli.doctor import run_checks
from py_code_mode.cli.library import run_with_progress, using_session
from py_code_mode.errors import PyCodeModeError
from py_code_mode.execution.container.image import build_image
from py_code_mode.mcp_server import main as serve_mcp
from py_code_mode.mcp_server.formatting import (
    format_artifacts,
    format_tools,
    format_workflow,
    format_workflows,
    render_value,
    workflow_line,
)
from py_code_mode.mcp_server.options import (
    DEFAULT_PREFIX,
    DEFAULT_TIMEOUT,
    ServerOptions,
    default_base,
)

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["app"]

logger = logging.getLogger("py_code_mode.cli")

_T = TypeVar("_T")

app = typer.Typer(
    name="py-code-mode",
    help="A persistent Python environment for AI agents: run code with the tools, "
    "workflows, artifacts and deps namespaces, manage the shared library, or serve it "
    "over MCP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tools_app = typer.Typer(help="Tools declared in the tools directory.", no_args_is_help=True)
workflows_app = typer.Typer(help="The workflow library.", no_args_is_help=True)
artifacts_app = typer.Typer(help="Stored artifacts.", no_args_is_help=True)
deps_app = typer.Typer(help="Packages of the execution environment.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")
app.add_typer(workflows_app, name="workflows")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(deps_app, name="deps")
image_app = typer.Typer(help="The container executor's image.", no_args_is_help=True)
app.add_typer(image_app, name="image")

Base = Annotated[
    Path | None,
    typer.Option(
        "--base",
        help="Library directory (default: $PY_CODE_MODE_BASE or ~/.code-mode).",
        show_default=False,
    ),
]
StorageDir = Annotated[
    Path | None, typer.Option("--storage", help="Store workflows and artifacts here instead.")
]
ToolsDir = Annotated[
    Path | None, typer.Option("--tools", help="Tool YAML directory (default: BASE/tools).")
]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis", metavar="URL", help="Keep the library in Redis at this URL."),
]
Prefix = Annotated[str, typer.Option("--prefix", help="Redis key prefix.")]
Executor = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="subprocess, in-process or container (default: subprocess when installed).",
        show_default=False,
    ),
]
Isolation = Annotated[
    str | None,
    typer.Option(
        "--isolation",
        help="Subprocess executor jail: bwrap (default on Linux) or none (explicit opt-out).",
        show_default=False,
    ),
]
Runtime = Annotated[
    str | None,
    typer.Option(
        "--runtime", help="Container executor OCI runtime, e.g. runsc (gVisor).", show_default=False
    ),
]
AllowHost = Annotated[
    list[str] | None,
    typer.Option(
        "--allow-host",
        metavar="HOST",
        help="Sandbox egress (repeatable): reach HOST (pypi.org, *.example.com) through the "
        "host's allowlist proxy; without it the sandbox has no network.",
        show_default=False,
    ),
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds before the run is interrupted.")]
Image = Annotated[
    str | None,
    typer.Option(
        "--image",
        envvar="PY_CODE_MODE_IMAGE",
        help="Image of --executor container (default: the one `image build` makes).",
        show_default=False,
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Quota = Annotated[
    list[str] | None,
    typer.Option(
        "--quota",
        metavar="NAME=VALUE",
        help="Set a quota (repeatable), e.g. max_artifact_bytes=50M; see `doctor`.",
    ),
]


@dataclass(frozen=True)
class SharedFlags:
    """The flags many commands share, as one command invocation gave them.

    Each field's annotation is its typer option: :func:`_with_flags` declares the
    fields a command takes as its options and hands the command one instance. A field
    a command does not take keeps its default, so every command builds its session
    the same way.
    """

    base: Base = None
    storage: StorageDir = None
    tools: ToolsDir = None
    redis: RedisUrl = None
    prefix: Prefix = DEFAULT_PREFIX
    executor: Executor = None
    isolation: Isolation = None
    runtime: Runtime = None
    allow_host: AllowHost = None
    timeout: Timeout = DEFAULT_TIMEOUT
    as_json: AsJson = False
    image: Image = None
    quota: Quota = None

    @property
    def base_dir(self) -> Path:
        """The library directory: ``--base`` or the default one."""
        return (self.base or default_base()).expanduser()

    def options(self) -> ServerOptions:
        """The checked server options of these flags; a bad flag exits with code 2."""
        options = ServerOptions(
            base=self.base_dir,
            storage=self.storage,
            tools=self.tools,
            redis=self.redis,
            prefix=self.prefix,
            executor=self.executor,  # type: ignore[arg-type]  # validated by check()
            timeout=self.timeout,
            isolation=self.isolation,
            runtime=self.runtime,
            allow_hosts=tuple(self.allow_host or ()),
            image=self.image,
            quotas=tuple(self.quota or ()),
        )
        try:
            options.check()
        except PyCodeModeError as exc:
            _fail(str(exc), code=2)
        return options

    def library(self, action: Callable[[Session], Coroutine[Any, Any, _T]]) -> _T:
        """Run ``action`` on the library alone: reading it must not start the executor."""
        return _in_session(self.options().make_session, action, starting=None)

    def started(
        self, action: Callable[[Session], Coroutine[Any, Any, _T]], *, what: str = "executor"
    ) -> _T:
        """Run ``action`` on a started session; ``what`` names the start in progress output."""
        options = self.options()
        return _in_session(
            options.make_session,
            action,
            starting=f"starting the {options.executor_kind} {what}",
        )

    def show(self, data: _T, text: Callable[[_T], str]) -> None:
        """Print ``data`` as JSON with ``--json``, else as ``text`` renders it."""
        if self.as_json:
            _print_json(data)
        else:
            typer.echo(text(data))


# Where the library's workflows, artifacts and deps are kept.
_STORE = ("storage", "redis", "prefix", "quota")


def _with_flags(*names: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command ``--base`` and the named shared flags as one ``flags`` argument.

    Typer reads a command's options from its signature, so the wrapper's signature is
    the command's own parameters followed by the shared ones in :class:`SharedFlags`
    field order, which is the order ``--help`` lists them in.
    """
    chosen = {"base", *names}
    if "executor" in chosen:
        chosen.add("image")  # the container executor's image goes with the executor
    options = get_type_hints(SharedFlags, include_extras=True)
    if unknown := chosen - options.keys():
        raise TypeError(f"no shared flags named {sorted(unknown)}")
    shared = [
        inspect.Parameter(
            field.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=field.default,
            annotation=options[field.name],
        )
        for field in fields(SharedFlags)
        if field.name in chosen
    ]

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        params = [param for param in own.parameters.values() if param.name != "flags"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            flags = SharedFlags(**{param.name: kwargs.pop(param.name) for param in shared})
            command(**kwargs, flags=flags)

        wrapper.__signature__ = own.replace(parameters=[*params, *shared])  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"py-code-mode: error: {message}", err=True)
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=repr))


def _delete(
    flags: SharedFlags,
    kind: str,
    name: str,
    delete: Callable[[Session], Coroutine[Any, Any, bool]],
) -> None:
    if not flags.library(delete):
        _fail(f"no {kind} named {name!r}")
    typer.echo(f"deleted {kind} {name}")


def _in_session(
    make_session: Callable[[], Session],
    action: Callable[[Session], Coroutine[Any, Any, _T]],
    *,
    starting: str | None,
) -> _T:
    try:
        # Printable whatever storage holds (a str artifact may keep lone surrogates).
        return cast("_T", safe_data(using_session(make_session(), action, starting=starting)))
    except PyCodeModeError as exc:
        _fail(safe_text(str(exc)))


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log only errors.")] = False,
) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Progress messages of long steps (environment creation, installs) are INFO.
    logging.getLogger("py_code_mode").setLevel(level)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def mcp(ctx: typer.Context) -> None:
    """Serve over MCP (stdio or HTTP); the same flags as py-code-mode-mcp (see --help)."""
    # Same log output as py-code-mode-mcp: drop the CLI's progress level.
    logging.getLogger("py_code_mode").setLevel(logging.NOTSET)
    serve_mcp(ctx.args, prog="py-code-mode mcp")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command("run")
@_with_flags(
    "storage",
    "tools",
    "redis",
    "prefix",
    "executor",
    "isolation",
    "runtime",
    "allow_host",
    "timeout",
    "as_json",
    "quota",
)
def run_code(
    file: Annotated[
        str | None,
        typer.Argument(help="Python file to run, or - for stdin.", show_default=False),
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", "-c", help="Code to run.", show_default=False)
    ] = None,
    *,
    flags: SharedFlags,
) -> None:
    """Run Python code in a session on the library; exit 1 if it raises.

    The value of the last expression is printed after the code's own output; the
    traceback of an error goes to stderr.
    """
    if code is not None and file is not None:
        _fail("give code with -c or a file, not both", code=2)
    if code is None:
        if file is None and sys.stdin.isatty():
            _fail("give code with -c CODE, a file, or pipe it on stdin", code=2)
        if file is None or file == "-":
            code = sys.stdin.read()
        else:
            try:
                code = Path(file).read_text(encoding="utf-8")
            except OSError as exc:
                _fail(f"cannot read {file}: {exc.strerror or exc}", code=2)
    source = code
    result = flags.started(lambda s: s.run(source, timeout=flags.timeout))
    if flags.as_json:
        _print_json(result.to_dict())
    else:
        if result.stdout:
            typer.echo(result.stdout, nl=not result.stdout.endswith("\n"))
        if result.stderr:
            typer.echo(result.stderr, nl=not result.stderr.endswith("\n"), err=True)
        if result.value is not None:
            typer.echo(render_value(result.value))
        if result.error is not None:
            typer.echo(result.error.rstrip("\n"), err=True)
    if not result.is_ok:
        raise typer.Exit(1)


# -- tools ---------------------------------------------------------------------------
@tools_app.command("list")
@_with_flags("tools", "as_json")
def tools_list(*, flags: SharedFlags) -> None:
    """List tools and their callables."""
    flags.show(flags.library(lambda s: s.list_tools()), format_tools)


# -- workflows -----------------------------------------------------------------------
@workflows_app.command("list")
@_with_flags(*_STORE, "as_json")
def workflows_list(*, flags: SharedFlags) -> None:
    """List workflows with their parameters."""
    flags.show(flags.library(lambda s: s.list_workflows()), format_workflows)


@workflows_app.command("search")
@_with_flags(*_STORE, "as_json")
def workflows_search(
    query: Annotated[str, typer.Argument(help="What the workflow should do.")],
    *,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 5,
    flags: SharedFlags,
) -> None:
    """Find workflows for a task, best match first."""
    found = flags.library(lambda s: s.search_workflows(query, limit))
    flags.show(found, lambda data: format_workflows(data, query=query))


@workflows_app.command("show")
@_with_flags(*_STORE, "as_json")
def workflows_show(
    name: Annotated[str, typer.Argument(help="Workflow name.")], *, flags: SharedFlags
) -> None:
    """Show a workflow with its source."""
    record = flags.library(lambda s: s.get_workflow(name))
    if record is None:
        _fail(f"no workflow named {name!r}; `py-code-mode workflows list` shows what exists")
    flags.show(record, lambda data: format_workflow(data, limit=10**9))


@workflows_app.command("add")
@_with_flags(*_STORE)
def workflows_add(
    name: Annotated[str, typer.Argument(help="Workflow name (a Python identifier).")],
    file: Annotated[
        str, typer.Argument(help="Python file defining run(...), or - for stdin.")
    ] = "-",
    description: Annotated[
        str, typer.Option("--description", "-d", help="What it does (default: docstring).")
    ] = "",
    *,
    flags: SharedFlags,
) -> None:
    """Add or replace a workflow from a Python file."""
    source = _read_input(file)
    record = flags.library(lambda s: s.add_workflow(name, source, description))
    typer.echo(f"saved workflow {workflow_line(record)}")


@workflows_app.command("rm")
@_with_flags(*_STORE)
def workflows_rm(
    name: Annotated[str, typer.Argument(help="Workflow name.")], *, flags: SharedFlags
) -> None:
    """Delete a workflow."""
    _delete(flags, "workflow", name, lambda s: s.remove_workflow(name))


# -- artifacts -----------------------------------------------------------------------
@artifacts_app.command("list")
@_with_flags(*_STORE, "as_json")
def artifacts_list(*, flags: SharedFlags) -> None:
    """List artifacts."""
    flags.show(flags.library(lambda s: s.list_artifacts()), format_artifacts)


@artifacts_app.command("get")
@_with_flags(*_STORE)
def artifacts_get(
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    *,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the data to this file.")
    ] = None,
    flags: SharedFlags,
) -> None:
    """Print an artifact (or write it to a file): text as-is, JSON as JSON, bytes raw."""
    data = flags.library(lambda s: s.load_artifact(name))
    if isinstance(data, bytes):
        payload = data
    elif isinstance(data, str):
        payload = data.encode("utf-8")
    else:
        payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if output is not None:
        try:
            output.write_bytes(payload)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(payload)
    sys.stdout.buffer.flush()


@artifacts_app.command("put")
@_with_flags(*_STORE)
def artifacts_put(
    name: Annotated[str, typer.Argument(help="Artifact name.")],
    file: Annotated[str, typer.Argument(help="File to store, or - for stdin.")] = "-",
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Parse the input as JSON and store the data.")
    ] = False,
    binary: Annotated[bool, typer.Option("--binary", help="Store the input as bytes.")] = False,
    *,
    flags: SharedFlags,
) -> None:
    """Store a file (or stdin) as an artifact: text by default."""
    if as_json and binary:
        _fail("--json and --binary exclude each other", code=2)
    raw = _read_bytes(file)
    data: Any
    if binary:
        data = raw
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _fail("the input is not UTF-8 text; pass --binary to store bytes", code=2)
        if as_json:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                _fail(f"the input is not valid JSON: {exc}", code=2)
        else:
            data = text
    info = flags.library(lambda s: s.save_artifact(name, data, description))
    typer.echo(f"saved artifact {info['name']} ({info['kind']}, {info['size']} bytes)")


@artifacts_app.command("rm")
@_with_flags(*_STORE)
def artifacts_rm(
    name: Annotated[str, typer.Argument(help="Artifact name.")], *, flags: SharedFlags
) -> None:
    """Delete an artifact."""
    _delete(flags, "artifact", name, lambda s: s.delete_artifact(name))


# -- deps ----------------------------------------------------------------------------
@deps_app.command("list")
@_with_flags(*_STORE)
def deps_list(*, flags: SharedFlags) -> None:
    """List the persisted package specs."""
    for spec in flags.library(lambda s: s.list_deps()):
        typer.echo(spec)


def _change_deps(
    flags: SharedFlags, what: str, change: Callable[[Session], Coroutine[Any, Any, _T]]
) -> _T:
    async def go(session: Session) -> _T:
        return await run_with_progress(what, change(session))

    return flags.started(go, what="executor's environment")


@deps_app.command("add")
@_with_flags(*_STORE, "executor")
def deps_add(
    spec: Annotated[str, typer.Argument(help="Requirement, e.g. 'pandas>=2'.")],
    *,
    flags: SharedFlags,
) -> None:
    """Install a package into the execution environment and list it."""
    outcome = _change_deps(flags, f"installing {spec}", lambda s: s.add_dep(spec))
    typer.echo(f"added {outcome.get('spec', spec)}")


@deps_app.command("rm")
@_with_flags(*_STORE, "executor")
def deps_rm(
    spec: Annotated[str, typer.Argument(help="Package name.")], *, flags: SharedFlags
) -> None:
    """Uninstall a package and drop it from the list."""
    if not _change_deps(flags, f"removing {spec}", lambda s: s.remove_dep(spec)):
        _fail(f"{spec!r} is not in the deps list")
    typer.echo(f"removed {spec}")


@deps_app.command("sync")
@_with_flags(*_STORE, "executor")
def deps_sync(*, flags: SharedFlags) -> None:
    """Install every listed package into the execution environment."""
    outcome = _change_deps(flags, "installing the listed packages", lambda s: s.sync_deps())
    installed = outcome.get("installed") or []
    typer.echo(f"synced {len(installed)} package(s)")


# -- doctor --------------------------------------------------------------------------
@app.command()
@_with_flags("redis", "image", "quota")
def doctor(*, flags: SharedFlags) -> None:
    """Check uv, Python, Docker, Redis and the embedding model; say how to fix problems.

    Exits 1 when a required part fails; optional parts (Docker, embeddings) only warn.
    """
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    checks = run_checks(
        flags.base_dir, flags.redis, image=flags.image, quotas=flags.options().make_quotas()
    )
    for check in checks:
        typer.echo(f"[{marks[check.status]}] {check.name}: {check.detail}")
        if check.fix and check.status != "ok":
            typer.echo(f"       fix: {check.fix}")
        elif check.fix:
            typer.echo(f"       note: {check.fix}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


@image_app.command("build")
def image_build(
    tag: Annotated[str, typer.Option(help="Name of the image.")] = "py-code-mode-worker:latest",
    base: Annotated[
        str, typer.Option(help="Base image with python3 >= 3.11.")
    ] = "python:3.12-slim",
    dep: Annotated[list[str] | None, typer.Option(help="Package to bake in (repeatable).")] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option(help="PEM file to trust, for an intercepting HTTPS proxy.")
    ] = None,
    with_worker: Annotated[
        bool, typer.Option(help="Also install the worker, for TCP use without the executor.")
    ] = False,
) -> None:
    """Build the container executor's image from docker/Dockerfile, showing progress."""
    try:
        build_image(
            tag,
            base_image=base,
            deps=dep or [],
            ca_bundle=ca_bundle,
            with_worker=with_worker,
            on_progress=typer.echo,
        )
    except PyCodeModeError as exc:
        _fail(str(exc))


def _read_bytes(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(file).read_bytes()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror or exc}", code=2)


def _read_input(file: str) -> str:
    try:
        return _read_bytes(file).decode("utf-8")
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text", code=2)
