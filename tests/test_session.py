"""The Session facade: construction, lifecycle, one-liners and facade methods."""

from __future__ import annotations

from pathlib import Path

import pytest

from py_code_mode import (
    ConfigError,
    FileStorage,
    InvalidNameError,
    Session,
    SessionClosedError,
    WorkflowError,
)
from py_code_mode.execution import InProcessExecutor


def test_a_session_without_storage_says_what_to_pass() -> None:
    with pytest.raises(ConfigError, match="FileStorage"):
        Session(storage=None)  # type: ignore[arg-type]


def test_a_session_with_the_wrong_executor_type_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SubprocessExecutor"):
        Session(storage=FileStorage(tmp_path), executor="subprocess")  # type: ignore[arg-type]


def test_from_base_rejects_an_unknown_executor_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown executor"):
        Session.from_base(tmp_path, executor="gpu")  # type: ignore[arg-type]


async def test_start_and_close_are_idempotent(tmp_path: Path) -> None:
    session = Session.inprocess(tmp_path)
    await session.start()
    await session.start()
    assert (await session.run("1")).value == 1
    await session.close()
    await session.close()
    assert session.closed
    with pytest.raises(SessionClosedError):
        await session.start()
    with pytest.raises(SessionClosedError):
        await session.list_workflows()


async def test_the_first_run_starts_the_session(tmp_path: Path) -> None:
    session = Session(storage=FileStorage(tmp_path), executor=InProcessExecutor())
    try:
        assert (await session.run("40 + 2")).value == 42
    finally:
        await session.close()


async def test_code_must_be_a_string(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        with pytest.raises(TypeError, match="str"):
            await session.run(42)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="timeout"):
            await session.run("1", timeout=0)


async def test_from_base_discovers_tools_workflows_and_artifacts(
    tmp_path: Path, tools_dir: Path
) -> None:
    base = tools_dir.parent
    (base / "workflows").mkdir()
    (base / "workflows" / "hello.py").write_text(
        'def run(name: str = "you") -> str:\n    """Greet someone."""\n    return f"hi {name}"\n'
    )
    async with Session.inprocess(base) as session:
        assert {t["name"] for t in await session.list_tools()} == {"fail", "greet"}
        assert [w["name"] for w in await session.list_workflows()] == ["hello"]
        assert (await session.run("workflows.hello(name='ann')")).value == "hi ann"
        await session.save_artifact("note.txt", "hello")
    assert (base / "artifacts").is_dir()


async def test_from_base_creates_a_missing_directory(tmp_path: Path) -> None:
    base = tmp_path / "new" / "base"
    async with Session.inprocess(base) as session:
        assert (await session.run("artifacts.save('a', 1)")).is_ok
    assert base.is_dir()


async def test_facade_workflow_methods_validate_and_return_plain_data(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        created = await session.add_workflow(
            "add", "def run(a: int, b: int = 2):\n    return a + b\n", "Add two numbers"
        )
        assert created["description"] == "Add two numbers"
        assert [p["name"] for p in created["parameters"]] == ["a", "b"]
        fetched = await session.get_workflow("add")
        assert fetched is not None
        assert "return a + b" in fetched["source"]
        assert await session.get_workflow("missing") is None
        with pytest.raises(WorkflowError, match="syntax error"):
            await session.add_workflow("bad", "def run(:")
        with pytest.raises(InvalidNameError):
            await session.add_workflow("1bad", "def run(): pass")
        hits = await session.search_workflows("add numbers")
        assert hits[0]["name"] == "add"
        assert await session.remove_workflow("add") is True
        assert await session.remove_workflow("add") is False


async def test_a_workflow_description_survives_a_new_session(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        await session.add_workflow(
            "noop", "def run():\n    return None\n", "Does nothing", {"team": "a"}
        )
    async with Session.inprocess(tmp_path) as session:
        listed = await session.list_workflows()
        assert listed[0]["description"] == "Does nothing"
        assert listed[0]["metadata"] == {"team": "a"}


class _CountingExecutor(InProcessExecutor):
    starts = 0

    async def start(self, host) -> None:  # type: ignore[no-untyped-def]
        type(self).starts += 1
        await super().start(host)


async def test_library_calls_do_not_start_the_executor_but_running_code_does(
    tmp_path: Path,
) -> None:
    executor = _CountingExecutor()
    session = Session(storage=FileStorage(tmp_path), executor=executor)
    try:
        await session.add_workflow("one", "def run():\n    return 1\n")
        assert [w["name"] for w in await session.list_workflows()] == ["one"]
        await session.save_artifact("a.txt", "x")
        assert await session.list_tools() == []
        assert _CountingExecutor.starts == 0
        assert (await session.run("workflows.one()")).value == 1
        assert (await session.run("2")).value == 2
        assert _CountingExecutor.starts == 1
    finally:
        await session.close()
