"""The command table is the only way across the host boundary, and checks input once."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import typer
from mcp import Client
from typer.testing import CliRunner

import py_code_mode.worker.namespaces as worker_namespaces
from py_code_mode import (
    ArtifactError,
    DependencyError,
    FileStorage,
    HostError,
    InvalidNameError,
    PyCodeModeError,
    Session,
    ToolError,
    WorkflowError,
)
from py_code_mode._private.commands import COMMANDS
from py_code_mode._private.services import HostServices
from py_code_mode.cli.app import app
from py_code_mode.execution import InProcessExecutor
from py_code_mode.mcp_server.options import ServerOptions
from py_code_mode.mcp_server.server import build_server


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the table entries called; each call then fails, so nothing runs."""
    names: list[str] = []

    async def record(self: HostServices, name: str, /, **params: Any) -> Any:
        assert name in COMMANDS, name
        names.append(name)
        raise HostError("recorded")

    monkeypatch.setattr(HostServices, "call", record)
    return names


# -- every adapter maps to table entries ---------------------------------------------------


def test_every_worker_rpc_name_is_an_entry_agents_may_call() -> None:
    tree = ast.parse(Path(worker_namespaces.__file__).read_text())
    rpc_names = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "call"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    agent_entries = {name for name, command in COMMANDS.items() if command.agent}
    assert rpc_names == agent_entries


FACADE_ARGS: dict[str, dict[str, Any]] = {
    "run": {"code": "1"},
    "reset": {},
    "list_tools": {},
    "search_tools": {"query": "q"},
    "list_workflows": {},
    "search_workflows": {"query": "q"},
    "get_workflow": {"name": "w"},
    "add_workflow": {"name": "w", "source": "def run():\n    pass\n"},
    "remove_workflow": {"name": "w"},
    "list_artifacts": {},
    "save_artifact": {"name": "a", "data": "x"},
    "load_artifact": {"name": "a"},
    "delete_artifact": {"name": "a"},
    "list_deps": {},
    "add_dep": {"spec": "x"},
    "remove_dep": {"spec": "x"},
    "sync_deps": {},
}


async def test_every_facade_method_is_one_table_entry(tmp_path: Path, recorded: list[str]) -> None:
    methods = {
        name
        for name, member in inspect.getmembers(Session, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in ("start", "close")
    }
    assert methods == set(FACADE_ARGS)
    async with Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()) as session:
        for name, kwargs in FACADE_ARGS.items():
            before = len(recorded)
            with pytest.raises(HostError, match="recorded"):
                await getattr(session, name)(**kwargs)
            assert len(recorded) == before + 1, name


MCP_ARGS: dict[str, dict[str, Any]] = {
    "run_code": {"code": "1"},
    "search_tools": {"query": "q"},
    "search_workflows": {"query": "q"},
    "get_workflow": {"name": "w"},
    "create_workflow": {"name": "w", "source": "def run():\n    pass\n"},
    "delete_workflow": {"name": "w"},
    "load_artifact": {"name": "a"},
    "add_dep": {"spec": "x"},
    "remove_dep": {"spec": "x"},
}


async def test_every_mcp_tool_is_one_table_entry(tmp_path: Path, recorded: list[str]) -> None:
    server = build_server(ServerOptions(base=tmp_path, executor="in-process"))
    async with Client(server) as client:
        tools = (await client.list_tools()).tools
        assert len(tools) >= 13
        for tool in tools:
            before = len(recorded)
            result = await client.call_tool(tool.name, MCP_ARGS.get(tool.name, {}))
            assert result.is_error, tool.name
            assert len(recorded) == before + 1, tool.name
            hints = tool.annotations
            assert hints is not None
            assert hints.read_only_hint == COMMANDS[recorded[-1]].read_only, tool.name


CLI_ARGS: dict[str, list[str]] = {
    "run": ["--executor", "in-process", "-c", "1"],
    "tools list": [],
    "workflows list": [],
    "workflows search": ["q"],
    "workflows show": ["w"],
    "workflows add": ["w", "{file}"],
    "workflows rm": ["w"],
    "artifacts list": [],
    "artifacts get": ["a"],
    "artifacts put": ["a", "{file}"],
    "artifacts rm": ["a"],
    "deps list": [],
    "deps add": ["--executor", "in-process", "x"],
    "deps rm": ["--executor", "in-process", "x"],
    "deps sync": ["--executor", "in-process"],
}
CLI_OUTSIDE_THE_BOUNDARY = {"version", "mcp", "doctor", "image build"}


def _leaf_commands(group: Any, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            found |= _leaf_commands(command, f"{path} ")
        else:
            found.add(path)
    return found


def test_every_cli_command_is_one_table_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: list[str]
) -> None:
    assert _leaf_commands(typer.main.get_command(app)) == set(CLI_ARGS) | CLI_OUTSIDE_THE_BOUNDARY
    monkeypatch.setenv("PY_CODE_MODE_BASE", str(tmp_path / "library"))
    source = tmp_path / "flow.py"
    source.write_text("def run():\n    pass\n")
    runner = CliRunner()
    for command, args in CLI_ARGS.items():
        before = len(recorded)
        argv = [*command.split(), *(a.replace("{file}", str(source)) for a in args)]
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, (command, result.output)
        assert "recorded" in result.output, command
        assert len(recorded) == before + 1, command


async def test_agent_code_cannot_reach_entries_not_meant_for_it(tmp_path: Path) -> None:
    async with Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()) as session:
        host = await session._library()
        for method in ("session.run", "session.reset", "nope", 3):
            with pytest.raises(PyCodeModeError, match="unknown host method"):
                await host.dispatch(method, {})  # type: ignore[arg-type]


# -- input is checked once, with one line per mistake --------------------------------------


@pytest.fixture
async def host(tmp_path: Path) -> Any:
    async with Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()) as session:
        yield await session._library()


@pytest.mark.parametrize(
    ("method", "params", "error", "message"),
    [
        ("tools.search", {"query": "q", "limit": 0}, ToolError,
         "tools.search: argument 'limit': input should be greater than or equal to 1, got int 0;"
         " send a positive integer"),
        ("tools.search", {"query": "q", "limit": True}, ToolError, "argument 'limit'"),
        ("tools.search", {"query": 5}, ToolError, "argument 'query': input should be a valid"),
        ("tools.call", {"tool": "t", "args": {1: "x"}}, ToolError,
         "argument 'args' key 1: input should be a valid string, got int 1"),
        ("tools.call", {"tool": "t", "args": [1]}, ToolError,
         "argument 'args': input should be a valid dictionary, got list [1]"),
        ("workflows.search", {"query": "q", "limmit": 3}, WorkflowError,
         "unknown argument 'limmit'; accepted: query, limit"),
        ("workflows.get", {}, WorkflowError, "missing required argument 'name'"),
        ("workflows.get", {"name": "list"}, InvalidNameError, "clashes with the method"),
        ("workflows.create", {"name": "w", "source": "x = ("}, WorkflowError, "syntax error"),
        ("workflows.create", {"name": "w", "source": b"def run(): pass"}, WorkflowError,
         "argument 'source': input should be a valid string"),
        ("artifacts.load", {"name": "../x"}, InvalidNameError, "escape the artifact store"),
        ("artifacts.save", {"name": "a", "data": 1, "metadata": "m"}, ArtifactError,
         "argument 'metadata': input should be a valid dictionary, got str 'm'; send a dict"),
        ("artifacts.save", {"name": "a", "data": 1, "description": 3}, ArtifactError,
         "argument 'description': input should be a valid string, got int 3"),
        ("artifacts.save", {"name": None, "data": 1}, InvalidNameError, "non-empty string"),
        ("deps.add", {"spec": "x @ https://e.org/x.whl"}, DependencyError, "URL"),
    ],
)  # fmt: skip
async def test_bad_input_is_one_library_error_naming_the_argument(
    host: HostServices, method: str, params: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error) as caught:
        await host.dispatch(method, params)
    assert message in str(caught.value)
    assert "pydantic" not in str(caught.value)
    assert "errors.pydantic.dev" not in str(caught.value)


BAD_ARTIFACT_NAMES = ["../x", "/etc/passwd", "a\x00b", "", ".hidden", "a/../../b", "a\\b", "a//b"]
BAD_ARTIFACT_NAMES += [".index.json", ".index.log", "a/.tmp-x", "x\udcff", "a" * 256]
BAD_WORKFLOW_NAMES = ["../x", "/etc/passwd", "a\x00b", "", ".hidden", "list", "class", "_private"]
BAD_WORKFLOW_NAMES += ["__init__", "x\udcff", "caf\u00e9"]


@pytest.mark.parametrize("name", [*BAD_ARTIFACT_NAMES, None, 3])
async def test_unsafe_artifact_names_are_refused_by_every_artifact_command(
    host: HostServices, name: Any
) -> None:
    for method in ("save", "load", "exists", "info", "delete"):
        params = {"name": name, "data": "x"} if method == "save" else {"name": name}
        with pytest.raises(InvalidNameError):
            await host.dispatch(f"artifacts.{method}", params)
    assert await host.call("artifacts.list") == []


@pytest.mark.parametrize("name", [*BAD_WORKFLOW_NAMES, None])
async def test_unusable_workflow_names_are_refused_by_every_workflow_command(
    host: HostServices, name: Any
) -> None:
    for method in ("get", "delete", "create"):
        params = {"name": name, "source": "def run():\n    pass\n"}
        if method != "create":
            del params["source"]
        with pytest.raises(InvalidNameError):
            await host.dispatch(f"workflows.{method}", params)
    assert await host.call("workflows.list") == []


async def test_each_mistake_gets_its_own_line_in_one_error(host: HostServices) -> None:
    with pytest.raises(WorkflowError) as caught:
        await host.dispatch("workflows.search", {"query": 1, "limit": -1, "extra": 0})
    text = str(caught.value)
    assert "argument 'query'" in text
    assert "argument 'limit'" in text
    assert "unknown argument 'extra'" in text
