"""Approval hooks: calls marked confirm ask Session(approve=...) first, in every executor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ApprovalRequest, ConfigError, FileStorage, Session, ToolDeniedError
from py_code_mode.execution import InProcessExecutor
from py_code_mode.execution.in_process import InProcessConfig
from py_code_mode.execution.protocol import Executor
from py_code_mode.execution.subprocess import SubprocessConfig, SubprocessExecutor

ECHO = """\
name: echo
description: Print words
command: echo
separator: null
schema:
  options:
    token: {type: string, description: a secret}
  positional:
    - {name: words, type: array, description: Words to print}
recipes:
  hello:
    description: Say hello
    preset: {words: [hello]}
  shout:
    description: Shout, after a person said yes
    confirm: true
    preset: {words: [HEY]}
"""

GUARDED = """\
name: guarded
description: Print words, but only when someone approves
confirm: true
command: echo
separator: null
schema:
  positional:
    - {name: words, type: array}
"""

CATCH = """
try:
    out = {call}
except ToolDeniedError as exc:
    out = ["denied", type(exc).__name__, isinstance(exc, ToolError), exc.tool, str(exc)]
out
"""


def _tools(tmp_path: Path) -> Path:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "echo.yaml").write_text(ECHO)
    (folder / "guarded.yaml").write_text(GUARDED)
    return folder


def _executor(kind: str, tools: Path) -> Executor:
    if kind == "in-process":
        return InProcessExecutor(InProcessConfig(tools_path=tools))
    return SubprocessExecutor(SubprocessConfig(tools_path=tools))


async def _run(session: Session, call: str) -> Any:
    result = await session.run(CATCH.format(call=call), timeout=60)
    assert result.error is None, result.error
    return result.value


@pytest.mark.parametrize("kind", ["in-process", "subprocess"])
async def test_an_approved_call_runs_and_a_denied_one_raises_tool_denied_error(
    tmp_path: Path, kind: str
) -> None:
    asked: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> bool:
        asked.append(request)
        return "no" not in request.arguments.get("words", [])

    storage = FileStorage(tmp_path / "lib")
    executor = _executor(kind, _tools(tmp_path))
    async with Session(storage, executor, approve=approve) as session:
        assert (await _run(session, "tools.guarded(words=['yes'])")).strip() == "yes"
        denied = await _run(session, "tools.guarded(words=['no'])")
        assert denied[:4] == ["denied", "ToolDeniedError", True, "guarded"]
        assert "tools.guarded was denied by the approver" in denied[4]
        # Unmarked: not asked. A marked recipe of an unmarked tool: asked.
        assert (await _run(session, "tools.echo.hello()")).strip() == "hello"
        assert (await _run(session, "tools.echo.shout()")).strip() == "HEY"
    assert [(r.tool, r.callable) for r in asked] == [
        ("guarded", None),
        ("guarded", None),
        ("echo", "shout"),
    ]
    assert "confirm: true" in asked[0].reason


async def test_an_async_approver_is_awaited_and_sees_secrets_masked(tmp_path: Path) -> None:
    asked: list[ApprovalRequest] = []

    async def approve(request: ApprovalRequest) -> bool:
        await asyncio.sleep(0)
        asked.append(request)
        return False

    executor = _executor("in-process", _tools(tmp_path))
    async with Session(
        FileStorage(tmp_path / "lib"), executor, approve=approve, confirm=["echo"]
    ) as session:
        out = await _run(session, "tools.echo(words=['w'], token='s3cr3t-value')")
    assert out[1] == "ToolDeniedError"
    assert asked[0].arguments == {"words": ["w"], "token": "***"}
    assert "s3cr3t-value" not in asked[0].describe()
    assert "confirm pattern 'echo'" in asked[0].reason


@pytest.mark.parametrize(
    ("approve", "message"),
    [
        (None, "nobody can be asked in this session; to allow it, pass Session(approve="),
        (lambda request: 1 / 0, "the approver failed (ZeroDivisionError"),
        (lambda request: "yes", "denied by the approver"),  # only True allows
    ],
)
async def test_without_a_yes_the_call_is_refused_with_how_to_allow_it(
    tmp_path: Path, approve: Callable[[ApprovalRequest], Any] | None, message: str
) -> None:
    marker = tmp_path / "ran"
    executor = _executor("in-process", _tools(tmp_path))
    async with Session(FileStorage(tmp_path / "lib"), executor, approve=approve) as session:
        out = await _run(session, f"tools.guarded(words=['x'], ) or open({str(marker)!r}, 'w')")
        host = await session._library()  # the same command the MCP/CLI adapters use
        with pytest.raises(ToolDeniedError, match="guarded"):
            await host.call("tools.call", tool="guarded", args={"words": ["x"]})
    assert out[1] == "ToolDeniedError"
    assert message in out[4]
    assert not marker.exists()


def test_a_session_refuses_an_approver_that_is_not_callable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="approve"):
        Session(FileStorage(tmp_path), InProcessExecutor(), approve=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="confirm"):
        Session(FileStorage(tmp_path), InProcessExecutor(), confirm="git")


ROUNDABOUT = [
    "workflows.invoke('relay')",
    "workflows.relay()",
    "getattr(tools, 'guarded')(words=['x'])",
    "tools.guarded.__call__(words=['x'])",
    "tools.echo.shout.__call__()",
]


@pytest.mark.parametrize("kind", ["in-process", "subprocess"])
async def test_a_marked_tool_asks_on_every_route_agent_code_can_take(
    tmp_path: Path, kind: str
) -> None:
    # Attack: reach a confirm: true tool or recipe around its attribute - through a
    # workflow, getattr, or the bound method itself.
    asked: list[str] = []

    def approve(request: ApprovalRequest) -> bool:
        asked.append(request.tool)
        return False

    executor = _executor(kind, _tools(tmp_path))
    async with Session(FileStorage(tmp_path / "lib"), executor, approve=approve) as session:
        await session.add_workflow("relay", "def run():\n    return tools.guarded(words=['x'])\n")
        for call in ROUNDABOUT:
            out = await _run(session, call)
            assert isinstance(out, list), (call, out)
            assert out[1] == "ToolDeniedError", (call, out)
    assert len(asked) == len(ROUNDABOUT)
