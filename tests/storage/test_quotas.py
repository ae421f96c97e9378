"""Quotas checked by the backends with the write: refused saves leave the old data intact.

Runs on every backend of the contract suite (FileStorage and a real redis-server).
"""

from __future__ import annotations

import asyncio

import pytest

from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    ArtifactError,
    ArtifactQuotaError,
    QuotaExceededError,
    WorkflowError,
    WorkflowQuotaError,
)
from py_code_mode.quotas import Quotas
from py_code_mode.storage.protocol import StorageBackend

from .conftest import MakeStorage


def _flow(name: str, value: int = 1) -> object:
    return analyze_workflow(name, f"def run():\n    return {value}\n", "")


async def test_an_artifact_over_the_size_quota_is_refused_and_the_old_value_kept(
    storage: StorageBackend,
) -> None:
    quotas = Quotas(max_artifact_bytes=10)
    await storage.save_artifact("a", "small", description="old", quotas=quotas)
    with pytest.raises(ArtifactQuotaError) as caught:
        await storage.save_artifact("a", "x" * 11, description="new", quotas=quotas)
    error = caught.value
    assert isinstance(error, ArtifactError)
    assert isinstance(error, QuotaExceededError)
    assert (error.quota, error.value, error.limit) == ("max_artifact_bytes", 11, 10)
    assert "max_artifact_bytes=10" in str(error)
    assert "--quota max_artifact_bytes=N" in str(error)
    assert await storage.load_artifact("a") == "small"
    info = await storage.get_artifact_info("a")
    assert info is not None
    assert info.description == "old"


async def test_the_total_bytes_quota_counts_every_artifact_and_replacements(
    storage: StorageBackend,
) -> None:
    quotas = Quotas(max_total_artifact_bytes=100)
    await storage.save_artifact("a", b"1" * 60, quotas=quotas)
    await storage.save_artifact("b", b"2" * 30, quotas=quotas)
    with pytest.raises(ArtifactQuotaError) as caught:
        await storage.save_artifact("c", b"3" * 11, quotas=quotas)
    assert (caught.value.quota, caught.value.value) == ("max_total_artifact_bytes", 101)
    with pytest.raises(ArtifactQuotaError):
        await storage.save_artifact("a", b"4" * 71, quotas=quotas)  # grows a by 11
    assert await storage.load_artifact("a") == b"1" * 60
    assert await storage.get_artifact_info("c") is None
    # Replacing within the room, and after a delete, passes.
    await storage.save_artifact("a", b"5" * 70, quotas=quotas)
    assert await storage.delete_artifact("b")
    await storage.save_artifact("c", b"6" * 30, quotas=quotas)
    assert sorted(i.name for i in await storage.list_artifacts()) == ["a", "c"]
    assert await storage.load_artifact("a") == b"5" * 70


async def test_a_shrinking_replacement_passes_even_when_the_store_is_over_quota(
    storage: StorageBackend,
) -> None:
    await storage.save_artifact("big", b"x" * 500)
    await storage.save_artifact("big", b"x" * 200, quotas=Quotas(max_total_artifact_bytes=100))
    assert await storage.load_artifact("big") == b"x" * 200


async def test_the_artifact_count_quota_refuses_new_names_but_not_replacements(
    storage: StorageBackend,
) -> None:
    quotas = Quotas(max_artifacts=2)
    await storage.save_artifact("a", 1, quotas=quotas)
    await storage.save_artifact("b", 2, quotas=quotas)
    with pytest.raises(ArtifactQuotaError) as caught:
        await storage.save_artifact("c", 3, quotas=quotas)
    assert (caught.value.quota, caught.value.value, caught.value.limit) == ("max_artifacts", 3, 2)
    await storage.save_artifact("a", 10, quotas=quotas)
    assert await storage.load_artifact("a") == 10
    assert await storage.load_artifact("b") == 2
    assert await storage.get_artifact_info("c") is None


async def test_the_running_total_survives_reopening_and_counts_data_saved_before(
    make_storage: MakeStorage,
) -> None:
    first = await make_storage()
    await first.save_artifact("old", b"o" * 80)  # saved without quotas
    second = await make_storage()
    with pytest.raises(ArtifactQuotaError):
        await second.save_artifact("new", b"n" * 30, quotas=Quotas(max_total_artifact_bytes=100))
    assert await first.delete_artifact("old")
    await second.save_artifact("new", b"n" * 30, quotas=Quotas(max_total_artifact_bytes=100))
    assert await first.load_artifact("new") == b"n" * 30


async def test_the_workflow_count_quota_refuses_a_new_workflow_and_keeps_the_others(
    storage: StorageBackend,
) -> None:
    quotas = Quotas(max_workflows=1)
    await storage.save_workflow(_flow("one"), quotas=quotas)  # type: ignore[arg-type]
    with pytest.raises(WorkflowQuotaError) as caught:
        await storage.save_workflow(_flow("two"), quotas=quotas)  # type: ignore[arg-type]
    assert isinstance(caught.value, WorkflowError)
    assert caught.value.quota == "max_workflows"
    await storage.save_workflow(_flow("one", 2), quotas=quotas)  # type: ignore[arg-type]
    assert [r.name for r in await storage.list_workflows()] == ["one"]
    record = await storage.get_workflow("one")
    assert record is not None
    assert "return 2" in record.source


async def test_concurrent_writers_cannot_both_squeeze_under_the_count_quota(
    make_storage: MakeStorage,
) -> None:
    # Two backend instances on one place stand for two agents (processes, machines).
    first, second = await make_storage(), await make_storage()
    quotas = Quotas(max_artifacts=5, max_total_artifact_bytes=10_000)

    async def save(index: int) -> bool:
        backend = first if index % 2 else second
        try:
            await backend.save_artifact(f"a{index}", b"x" * 100, quotas=quotas)
        except ArtifactQuotaError:
            return False
        return True

    outcomes = await asyncio.gather(*(save(i) for i in range(20)))
    stored = await first.list_artifacts()
    assert outcomes.count(True) == 5
    assert len(stored) == 5
    assert sum(info.size for info in stored) == 500
