"""Session quotas: refused in agent code with the same class, nothing stored changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from py_code_mode import (
    ArtifactQuotaError,
    ConfigError,
    FileStorage,
    QuotaExceededError,
    Quotas,
    Session,
    WorkflowQuotaError,
)
from py_code_mode.execution import InProcessExecutor
from py_code_mode.execution.subprocess import SubprocessConfig, SubprocessExecutor

QUOTAS = Quotas(
    max_code_bytes=2_000,
    max_artifact_bytes=100,
    max_total_artifact_bytes=150,
    max_artifacts=3,
    max_workflows=2,
    max_workflow_source_bytes=300,
    max_description_bytes=50,
    max_query_chars=40,
)


@pytest.fixture(params=["in-process", "subprocess"])
async def session(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Session]:
    executor = (
        InProcessExecutor()
        if request.param == "in-process"
        else SubprocessExecutor(SubprocessConfig())
    )
    async with Session(storage=FileStorage(tmp_path), executor=executor, quotas=QUOTAS) as s:
        yield s


AGENT_CASES = [
    ("artifacts.save('big', 'x' * 101)", "ArtifactQuotaError", "max_artifact_bytes"),
    ("artifacts.save('d', 1, description='d' * 51)", "ArtifactQuotaError", "max_description_bytes"),
    ("artifacts.save('c', 'y' * 60)", "ArtifactQuotaError", "max_total_artifact_bytes"),
    ("workflows.create('w', 'def run():\\n    return 1\\n' + '#' * 300)", "WorkflowQuotaError",
     "max_workflow_source_bytes"),
    ("workflows.create('w', 'def run():\\n    return 1\\n', description='d' * 51)",
     "WorkflowQuotaError", "max_description_bytes"),
    ("workflows.search('q' * 41)", "WorkflowQuotaError", "max_query_chars"),
    ("tools.search('q' * 41)", "QuotaExceededError", "max_query_chars"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error_type", "quota"), AGENT_CASES)
async def test_agent_code_gets_the_quota_error_class_and_the_old_data_stays(
    session: Session, call: str, error_type: str, quota: str
) -> None:
    await session.save_artifact("a", "a" * 50, description="kept")
    await session.save_artifact("b", "b" * 50)
    await session.add_workflow("keep", "def run():\n    return 'kept'\n")
    code = (
        "try:\n"
        f"    {call}\n"
        "except QuotaExceededError as exc:\n"
        "    caught = [type(exc).__name__, exc.quota, exc.value > exc.limit, str(exc),\n"
        "              isinstance(exc, (ArtifactError, WorkflowError, QuotaExceededError))]\n"
        "caught"
    )
    result = await session.run(code, timeout=60)
    assert result.error is None, result.error
    name, got_quota, over, message, namespaced = result.value
    assert (name, got_quota, over, namespaced) == (error_type, quota, True, True)
    assert f"--quota {quota}=N" in message
    assert await session.load_artifact("a") == "a" * 50
    assert await session.load_artifact("b") == "b" * 50
    assert [a["name"] for a in await session.list_artifacts()] == ["a", "b"]
    assert [w["name"] for w in await session.list_workflows()] == ["keep"]


async def test_a_run_over_the_code_quota_is_refused_before_it_reaches_the_executor(
    tmp_path: Path,
) -> None:
    quotas = Quotas(max_code_bytes=1_000)
    async with Session(FileStorage(tmp_path), InProcessExecutor(), quotas=quotas) as session:
        await session.run("x = 1")
        with pytest.raises(QuotaExceededError) as caught:
            await session.run("x = 2\n" + "#" * 1_000)
        assert caught.value.quota == "max_code_bytes"
        assert "max_code_bytes=1,000" in str(caught.value)
        assert (await session.run("x")).value == 1


async def test_the_facade_raises_the_namespace_quota_classes(tmp_path: Path) -> None:
    async with Session(FileStorage(tmp_path), InProcessExecutor(), quotas=QUOTAS) as session:
        with pytest.raises(ArtifactQuotaError):
            await session.save_artifact("x", "x" * 101)
        with pytest.raises(WorkflowQuotaError):
            await session.add_workflow("w", "def run():\n    pass\n", "d" * 51)
        await session.add_workflow("one", "def run():\n    pass\n")
        await session.add_workflow("two", "def run():\n    pass\n")
        with pytest.raises(WorkflowQuotaError, match="max_workflows"):
            await session.add_workflow("three", "def run():\n    pass\n")
        assert [w["name"] for w in await session.list_workflows()] == ["one", "two"]


def test_quotas_parse_from_flags_with_units() -> None:
    quotas = Quotas.from_assignments(["max_artifact_bytes=5M", "max-artifacts=7"])
    assert (quotas.max_artifact_bytes, quotas.max_artifacts) == (5 * 1024 * 1024, 7)
    for bad in [
        "nope=1",
        "max_artifacts",
        "max_artifacts=-1",
        "max_artifacts=0",
        "max_artifacts=1T",
    ]:
        with pytest.raises(ConfigError, match="--quota"):
            Quotas.from_assignments([bad])


def test_a_session_refuses_quotas_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Quotas"):
        Session(FileStorage(tmp_path), InProcessExecutor(), quotas={"max_artifacts": 1})  # type: ignore[arg-type]


async def test_the_byte_total_holds_against_bytes_wide_text_and_concurrent_growth(
    tmp_path: Path,
) -> None:
    # Attack: slip past max_total_artifact_bytes (150) with bytes, with text whose
    # UTF-8 form is longer than its character count, or with two growths racing.
    async with Session(FileStorage(tmp_path), InProcessExecutor(), quotas=QUOTAS) as session:
        await session.save_artifact("a", "a" * 50)
        await session.save_artifact("b", "b" * 50)
        code = (
            "refused = []\n"
            "for data in (b'x' * 60, '\\u00e9' * 30):\n"
            "    try:\n"
            "        artifacts.save('c', data)\n"
            "    except ArtifactQuotaError as exc:\n"
            "        refused.append(exc.quota)\n"
            "refused"
        )
        result = await session.run(code, timeout=60)
        assert result.value == ["max_total_artifact_bytes"] * 2, result.error
        outcomes = await asyncio.gather(
            session.save_artifact("a", "A" * 90),
            session.save_artifact("b", "B" * 90),
            return_exceptions=True,
        )
        assert sum(isinstance(o, ArtifactQuotaError) for o in outcomes) == 1, outcomes
        sizes = [a["size"] for a in await session.list_artifacts()]
        assert sum(sizes) <= 150
        assert sorted(sizes) == [50, 90]
