"""One error tree: a failure is the same class, with the same bases, on both sides."""

from __future__ import annotations

import textwrap

import pytest

from py_code_mode import (
    ArtifactNotFoundError,
    PyCodeModeError,
    Session,
    ToolError,
    ToolNotFoundError,
    WorkflowError,
    WorkflowNotFoundError,
)

AGENT_CODE = """
def mro(exc):
    return [klass.__name__ for klass in type(exc).__mro__]

caught = {}
try:
    tools.nope
except ToolNotFoundError as exc:
    caught["tool"] = mro(exc)
try:
    tools.greet.nope()
except ToolNotFoundError as exc:
    caught["callable"] = mro(exc)
try:
    workflows.nope
except WorkflowNotFoundError as exc:
    caught["workflow_attr"] = mro(exc)
try:
    workflows.get("nope")
except WorkflowNotFoundError as exc:
    caught["workflow"] = mro(exc)
try:
    artifacts.load("nope")
except ArtifactNotFoundError as exc:
    caught["artifact"] = mro(exc)
caught["hasattr"] = [hasattr(tools, "nope"), hasattr(workflows, "nope")]
def is_all(cls, *bases):
    return all(issubclass(cls, base) for base in bases)

caught["bases"] = [
    is_all(ToolNotFoundError, ToolError, LookupError, AttributeError, PyCodeModeError),
    is_all(WorkflowNotFoundError, WorkflowError, KeyError, AttributeError, PyCodeModeError),
    is_all(ArtifactNotFoundError, ArtifactError, KeyError, PyCodeModeError),
    issubclass(ArtifactNotFoundError, AttributeError),
]
caught
"""


def _mro(exc: BaseException) -> list[str]:
    return [klass.__name__ for klass in type(exc).__mro__]


async def test_not_found_errors_are_the_same_classes_in_agent_code_and_from_session(
    session: Session,
) -> None:
    host = await session._library()
    with pytest.raises(ToolNotFoundError) as tool:
        await host.call("tools.call", tool="nope")
    with pytest.raises(ToolNotFoundError) as tool_callable:
        await host.call("tools.call", tool="greet", callable="nope")
    with pytest.raises(WorkflowNotFoundError) as workflow:
        await host.call("workflows.get", name="nope")
    with pytest.raises(ArtifactNotFoundError) as artifact:
        await session.load_artifact("nope")

    result = await session.run(textwrap.dedent(AGENT_CODE))
    assert result.is_ok, result.error
    agent = result.value
    assert isinstance(agent, dict)
    assert agent["tool"] == _mro(tool.value)
    assert agent["callable"] == _mro(tool_callable.value)
    assert agent["workflow"] == agent["workflow_attr"] == _mro(workflow.value)
    assert agent["artifact"] == _mro(artifact.value)
    assert agent["hasattr"] == [False, False]
    assert agent["bases"] == [True, True, True, False]


def test_documented_bases_hold_on_the_host() -> None:
    assert issubclass(ToolNotFoundError, ToolError)
    assert issubclass(ToolNotFoundError, LookupError)
    assert issubclass(ToolNotFoundError, AttributeError)
    assert issubclass(WorkflowNotFoundError, WorkflowError)
    assert issubclass(WorkflowNotFoundError, KeyError)
    assert issubclass(WorkflowNotFoundError, AttributeError)
    assert issubclass(ArtifactNotFoundError, KeyError)
    for cls in (ToolNotFoundError, WorkflowNotFoundError, ArtifactNotFoundError):
        assert issubclass(cls, PyCodeModeError)
    assert str(WorkflowNotFoundError("no workflow 'x'")) == "no workflow 'x'"
