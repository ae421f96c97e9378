"""FileStorage's artifact index stays cheap to update when the library is large.

Past a size threshold a save appends one line to ``artifacts/.index.log`` instead
of rewriting ``artifacts/.index.json``; the threshold is lowered here so a handful
of artifacts reach that mode.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from py_code_mode.errors import ArtifactNotFoundError
from py_code_mode.storage import file as file_module
from py_code_mode.storage.file import FileStorage
from tests.storage._writers import run_concurrent_writers

THRESHOLD = 600  # bytes: about three index entries


@pytest.fixture(autouse=True)
def small_rewrite_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_module, "_INDEX_REWRITE_BYTES", THRESHOLD)


def index_names(base: Path) -> set[str]:
    return set(json.loads((base / "artifacts" / ".index.json").read_text())["artifacts"])


async def fill_until_logging(fs: FileStorage) -> int:
    """Save artifacts until saves go to the log; return how many were saved."""
    log = fs.base_path / "artifacts" / ".index.log"
    for i in range(50):
        await fs.save_artifact(f"a{i}", f"value {i}")
        if log.exists():
            return i + 1
    raise AssertionError("the index never switched to appending")


async def test_a_save_in_a_large_library_appends_a_line_and_leaves_the_index_file_alone(
    tmp_path: Path,
) -> None:
    fs = FileStorage(tmp_path)
    count = await fill_until_logging(fs)
    index = tmp_path / "artifacts" / ".index.json"
    log = tmp_path / "artifacts" / ".index.log"
    before = index.read_bytes()
    lines_before = log.read_text().count("\n")

    await fs.save_artifact("late", {"x": 1}, description="added late")

    assert index.read_bytes() == before
    assert log.read_text().count("\n") == lines_before + 1
    assert "late" not in index_names(tmp_path)
    fresh = FileStorage(tmp_path)
    names = [a.name for a in await fresh.list_artifacts()]
    assert names == sorted([*(f"a{i}" for i in range(count)), "late"])
    assert await fresh.load_artifact("late") == {"x": 1}
    info = await fresh.get_artifact_info("late")
    assert info is not None
    assert (info.kind, info.description) == ("json", "added late")


async def test_the_log_is_folded_into_the_index_file_once_it_is_as_large(tmp_path: Path) -> None:
    fs = FileStorage(tmp_path)
    await fill_until_logging(fs)
    log = tmp_path / "artifacts" / ".index.log"
    for i in range(40):
        await fs.save_artifact(f"more{i}", i)
        if not log.exists():
            break
    else:
        raise AssertionError("the log was never folded into the index")
    assert {f"more{j}" for j in range(i + 1)} <= index_names(tmp_path)
    assert len(await FileStorage(tmp_path).list_artifacts()) == len(index_names(tmp_path))


async def test_another_instance_sees_saves_and_deletes_made_through_the_log(
    tmp_path: Path,
) -> None:
    writer, reader = FileStorage(tmp_path), FileStorage(tmp_path)
    await fill_until_logging(writer)
    assert await reader.load_artifact("a0") == "value 0"  # the reader caches the index now

    await writer.save_artifact("a0", "changed")
    await writer.save_artifact("new", b"\x00")
    assert await writer.delete_artifact("a1") is True

    assert await reader.load_artifact("a0") == "changed"
    assert await reader.load_artifact("new") == b"\x00"
    with pytest.raises(ArtifactNotFoundError):
        await reader.load_artifact("a1")
    assert "a1" not in {a.name for a in await reader.list_artifacts()}


async def test_a_resave_through_the_log_keeps_the_creation_time(tmp_path: Path) -> None:
    fs = FileStorage(tmp_path)
    await fill_until_logging(fs)
    first = await FileStorage(tmp_path).get_artifact_info("a0")
    await fs.save_artifact("a0", "again")
    again = await FileStorage(tmp_path).get_artifact_info("a0")
    assert first is not None
    assert again is not None
    assert again.created_at == first.created_at
    assert again.updated_at >= first.updated_at


async def test_a_line_left_unfinished_by_a_crash_is_skipped_and_later_saves_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fs = FileStorage(tmp_path)
    count = await fill_until_logging(fs)
    log = tmp_path / "artifacts" / ".index.log"
    with log.open("ab") as handle:
        handle.write(b'{"name":"half","entr')  # the writer died mid-line

    assert len(await FileStorage(tmp_path).list_artifacts()) == count
    await FileStorage(tmp_path).save_artifact("after", "kept")
    with caplog.at_level(logging.WARNING):
        names = {a.name for a in await FileStorage(tmp_path).list_artifacts()}
    assert "after" in names
    assert "half" not in names
    assert "bad line" in caplog.text
    assert await fs.load_artifact("after") == "kept"


LOG_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from py_code_mode.storage import file as file_module
    from py_code_mode.storage.file import FileStorage

    file_module._INDEX_REWRITE_BYTES = 600

    async def main(base: str, wid: int, count: int, go: str) -> None:
        deadline = time.monotonic() + 60
        while not Path(go).exists():
            if time.monotonic() > deadline:
                raise SystemExit("start signal never came")
            time.sleep(0.005)
        fs = FileStorage(base)
        for i in range(count):
            await fs.save_artifact(f"w{wid}/a{i}", {"w": wid, "i": i})
            if i % 4 == 3:
                assert await fs.delete_artifact(f"w{wid}/a{i}")
            assert await fs.load_artifact(f"w{wid}/a{i - i % 4}") == {"w": wid, "i": i - i % 4}

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
    """
)


@pytest.mark.slow
async def test_several_processes_appending_and_compacting_at_once_lose_nothing(
    tmp_path: Path,
) -> None:
    base = tmp_path / "shared-lib"
    workers, count = 4, 30
    run_concurrent_writers(LOG_WRITER, base, workers, count)

    expected = {f"w{w}/a{i}" for w in range(workers) for i in range(count) if i % 4 != 3}
    infos = await FileStorage(base).list_artifacts()
    assert {a.name for a in infos} == expected
    assert all(info.kind == "json" for info in infos)
