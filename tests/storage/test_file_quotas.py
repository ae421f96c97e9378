"""FileStorage keeps the artifact byte total with its index, also in log mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from py_code_mode.errors import ArtifactQuotaError
from py_code_mode.quotas import Quotas
from py_code_mode.storage import file as file_module
from py_code_mode.storage.file import FileStorage


@pytest.fixture(autouse=True)
def small_rewrite_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few entries put the index in append-only log mode, as a large library is.
    monkeypatch.setattr(file_module, "_INDEX_REWRITE_BYTES", 600)


async def test_totals_stay_exact_through_the_index_log_and_another_writer(
    tmp_path: Path,
) -> None:
    first, second = FileStorage(tmp_path), FileStorage(tmp_path)
    quotas = Quotas(max_total_artifact_bytes=1_000)
    for i in range(8):
        await first.save_artifact(f"a{i}", b"x" * 100, quotas=quotas)
    assert (tmp_path / "artifacts" / ".index.log").exists()
    # The other instance replays the log: it knows 800 bytes are used.
    with pytest.raises(ArtifactQuotaError) as caught:
        await second.save_artifact("big", b"y" * 201, quotas=quotas)
    assert caught.value.value == 1_001
    await second.save_artifact("a0", b"z" * 10, quotas=quotas)  # replacement: -90
    assert await second.delete_artifact("a1")  # -100
    # And the first sees the other's changes: 610 used, 390 free.
    await first.save_artifact("fits", b"f" * 390, quotas=quotas)
    with pytest.raises(ArtifactQuotaError):
        await first.save_artifact("over", b"o", quotas=quotas)
    fresh = FileStorage(tmp_path)
    assert sum(info.size for info in await fresh.list_artifacts()) == 1_000
    assert await fresh.load_artifact("a0") == b"z" * 10
    assert await fresh.get_artifact_info("over") is None
