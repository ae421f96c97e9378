"""FileStorage-specific behaviour: the layout on disk, hand-made files, symlinks,
failure handling and several processes sharing one base path."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    InvalidNameError,
    StorageError,
    WorkflowError,
)
from py_code_mode.models import WorkflowRecord
from py_code_mode.storage import file as file_module
from py_code_mode.storage.file import DEFAULT_MAX_ARTIFACT_BYTES, FileStorage
from tests.storage._writers import run_concurrent_writers

HOUR_NS = 3600 * 10**9

GREET = '''\
"""Module docstring, used only when run has none."""


def run(name: str, excited: bool = False) -> str:
    """Greet someone by name.

    Second paragraph is not part of the description.
    """
    return f"Hello {name}" + ("!" if excited else "")
'''


@pytest.fixture
async def fs(tmp_path: Path) -> Any:
    storage = FileStorage(tmp_path / "lib")
    await storage.open()
    yield storage
    await storage.close()


# Naming rules are the command layer's; never writing outside the base is the backend's.
_NOT_INSIDE = ["../x", "a/../../b", "", "a\x00b", "a//b", "./a", None, 3]
_STORE_FILES = [".index.json", ".index.log", ".tmp-0123456789abcdef", "a/.index.json"]


@pytest.mark.parametrize("name", [*_NOT_INSIDE, *_STORE_FILES])
async def test_artifact_names_never_lead_outside_the_base(tmp_path: Path, name: Any) -> None:
    storage = FileStorage(tmp_path / "lib")
    await storage.open()
    with pytest.raises(InvalidNameError, match="plain file names"):
        await storage.save_artifact(name, "x")
    with pytest.raises(InvalidNameError):
        await storage.load_artifact(name)
    with pytest.raises(InvalidNameError):
        await storage.delete_artifact(name)
    with pytest.raises(InvalidNameError):
        await storage.get_artifact_info(name)
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]
    assert await storage.list_artifacts() == []


async def test_an_artifact_never_overwrites_the_store_index(tmp_path: Path) -> None:
    # Attack: a library caller (no command table) names an artifact after the index.
    storage = FileStorage(tmp_path)
    await storage.open()
    await storage.save_artifact("kept", "x")
    for name in (".index.json", ".index.log"):
        with pytest.raises(InvalidNameError):
            await storage.save_artifact(name, "boom")
    assert [a.name for a in await storage.list_artifacts()] == ["kept"]
    assert await storage.load_artifact("kept") == "x"


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a\\b", "a\x00b", "", ".hidden", None])
async def test_workflow_names_never_lead_outside_the_base(tmp_path: Path, name: Any) -> None:
    storage = FileStorage(tmp_path / "lib")
    await storage.open()
    with pytest.raises(InvalidNameError, match="plain file name"):
        await storage.get_workflow(name)
    with pytest.raises(InvalidNameError):
        await storage.delete_workflow(name)
    with pytest.raises(InvalidNameError):
        await storage.save_workflow(WorkflowRecord(name=name, source="def run():\n    pass\n"))
    assert [p.name for p in tmp_path.iterdir()] == ["lib"]
    assert await storage.list_workflows() == []


def age(path: Path, ns: int = HOUR_NS) -> None:
    """Set mtime into the past so the file counts as settled for the read cache."""
    then = time.time_ns() - ns
    os.utime(path, ns=(then, then))


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


# -- construction ----------------------------------------------------------------------


def test_base_path_is_absolute_and_shown_in_repr(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    storage = FileStorage("lib")
    assert storage.base_path == tmp_path / "lib"
    assert storage.base_path.is_absolute()
    assert repr(storage) == f"FileStorage(base_path={str(tmp_path / 'lib')!r})"
    assert storage.max_artifact_bytes == DEFAULT_MAX_ARTIFACT_BYTES == 100 * 1024 * 1024


def test_base_path_expands_the_home_directory(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert FileStorage("~/lib").base_path == tmp_path / "lib"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_max_artifact_bytes_must_be_a_positive_int(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match="max_artifact_bytes"):
        FileStorage(tmp_path, max_artifact_bytes=bad)


async def test_open_creates_the_layout_and_is_idempotent(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "a" / "b")
    await storage.open()
    await storage.open()
    base = tmp_path / "a" / "b"
    for folder in ["workflows", "workflows/.meta", "artifacts", ".cache/embeddings"]:
        assert (base / folder).is_dir(), folder


async def test_open_on_a_file_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "lib").write_text("not a folder")
    with pytest.raises(StorageError, match=re.escape(str(tmp_path / "lib"))):
        await FileStorage(tmp_path / "lib").open()


async def test_works_without_open_and_after_close(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "lib")
    assert await storage.list_workflows() == []
    assert await storage.list_artifacts() == []
    assert await storage.list_deps() == []
    with pytest.raises(ArtifactNotFoundError):
        await storage.load_artifact("x")
    await storage.save_artifact("x", 1)
    await storage.close()
    assert await storage.load_artifact("x") == 1


# -- layout ----------------------------------------------------------------------------


async def test_everything_lands_in_the_documented_layout(fs: FileStorage) -> None:
    base = fs.base_path
    await fs.save_workflow(analyze_workflow("greet", GREET, "Say hi", metadata={"v": 1}))
    await fs.save_artifact("notes.txt", "héllo")
    await fs.save_artifact("raw.bin", b"\x00\x01")
    await fs.save_artifact("reports/2024.json", {"total": 3})
    await fs.add_dep("requests>=2")
    await fs.put_vectors("BAAI/bge-small-en-v1.5", {"h": [1.0]})

    assert (base / "workflows" / "greet.py").read_text() == GREET
    sidecar = json.loads((base / "workflows" / ".meta" / "greet.json").read_text())
    assert sidecar["description"] == "Say hi"
    assert sidecar["metadata"] == {"v": 1}
    assert {"created_at", "updated_at"} <= sidecar.keys()

    assert (base / "artifacts" / "notes.txt").read_bytes() == "héllo".encode()
    assert (base / "artifacts" / "raw.bin").read_bytes() == b"\x00\x01"
    assert json.loads((base / "artifacts" / "reports" / "2024.json").read_text()) == {"total": 3}
    index = json.loads((base / "artifacts" / ".index.json").read_text())
    entry = index["artifacts"]["notes.txt"]
    assert entry["kind"] == "str"
    assert entry["size"] == len("héllo".encode())
    assert {"description", "metadata", "created_at", "updated_at"} <= entry.keys()
    assert index["artifacts"]["raw.bin"]["kind"] == "bytes"
    assert index["artifacts"]["reports/2024.json"]["kind"] == "json"

    assert (base / "requirements.txt").read_text() == "requests>=2\n"
    (model_dir,) = (base / ".cache" / "embeddings").iterdir()
    assert model_dir.name.startswith("BAAI_bge-small-en-v1.5-")
    assert (model_dir / "vectors.bin").read_bytes().startswith(b"PCMVEC1\n")
    assert temp_files(base) == []


async def test_written_files_follow_the_umask(fs: FileStorage) -> None:
    await fs.save_artifact("a", "x")
    umask = os.umask(0)
    os.umask(umask)
    mode = (fs.base_path / "artifacts" / "a").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


async def test_vectors_round_trip_exactly_as_doubles(fs: FileStorage) -> None:
    vector = [0.1, 1 / 3, -2.5e-300, 1e300, 0.0]
    await fs.put_vectors("m", {"k": vector})
    assert (await fs.get_vectors("m", ["k"]))["k"] == vector
    other = FileStorage(fs.base_path)
    assert (await other.get_vectors("m", ["k"]))["k"] == vector


async def test_corrupt_vector_cache_is_treated_as_empty_and_rebuilt(
    fs: FileStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await fs.put_vectors("m", {"k": [1.0]})
    (path,) = (fs.base_path / ".cache" / "embeddings").rglob("vectors.bin")
    path.write_bytes(b"PCMVEC1\n\xff\xff\xff\xffgarbage")
    with caplog.at_level(logging.WARNING):
        assert await fs.get_vectors("m", ["k"]) == {}
    assert "corrupt embedding cache" in caplog.text
    await fs.put_vectors("m", {"j": [2.0]})
    assert await fs.get_vectors("m", ["k", "j"]) == {"j": [2.0]}


@pytest.mark.parametrize("bad", [{"k": ["x"]}, {"k": ["1.5"]}, {"k": None}, {1: [1.0]}])
async def test_bad_vectors_are_refused(fs: FileStorage, bad: Any) -> None:
    with pytest.raises(StorageError):
        await fs.put_vectors("m", bad)


async def test_vector_keys_must_be_a_sequence_not_a_string(fs: FileStorage) -> None:
    with pytest.raises(StorageError, match="single string"):
        await fs.get_vectors("m", "abc")
    with pytest.raises(StorageError, match="model id"):
        await fs.get_vectors("", ["k"])


# -- hand-written workflows ------------------------------------------------------------


async def test_a_hand_written_workflow_file_is_part_of_the_library(fs: FileStorage) -> None:
    path = fs.base_path / "workflows" / "greet.py"
    path.write_text(GREET)
    mtime = path.stat().st_mtime
    (listed,) = await fs.list_workflows()
    got = await fs.get_workflow("greet")
    assert got == listed
    assert got.source == GREET
    assert got.description == "Greet someone by name."
    assert [(p.name, p.type, p.required, p.default) for p in got.parameters] == [
        ("name", "str", True, None),
        ("excited", "bool", False, False),
    ]
    assert got.metadata == {}
    assert got.created_at == got.updated_at == mtime


async def test_hand_edits_after_a_save_show_on_the_next_read(fs: FileStorage) -> None:
    await fs.save_workflow(analyze_workflow("greet", GREET))
    first = await fs.get_workflow("greet")
    assert first is not None
    assert first.description == "Greet someone by name."
    path = fs.base_path / "workflows" / "greet.py"
    edited = GREET.replace("Greet someone by name.", "Wave at someone.").replace(
        "excited: bool = False", "excited: bool = False, times: int = 1"
    )
    path.write_text(edited)
    future = time.time_ns() + 5 * 10**9
    os.utime(path, ns=(future, future))
    got = await fs.get_workflow("greet")
    assert got is not None
    assert got.source == edited
    assert got.description == "Wave at someone."  # came from the docstring, follows it
    assert [p.name for p in got.parameters] == ["name", "excited", "times"]
    assert got.created_at == first.created_at
    assert got.updated_at > first.updated_at


async def test_an_explicit_description_survives_hand_edits(fs: FileStorage) -> None:
    await fs.save_workflow(analyze_workflow("greet", GREET, "Custom words"))
    path = fs.base_path / "workflows" / "greet.py"
    path.write_text(GREET.replace("Greet someone by name.", "Changed docstring."))
    got = await fs.get_workflow("greet")
    assert got is not None
    assert got.description == "Custom words"


async def test_saving_over_a_hand_written_file_keeps_its_age(fs: FileStorage) -> None:
    path = fs.base_path / "workflows" / "greet.py"
    path.write_text(GREET)
    age(path)
    old_mtime = path.stat().st_mtime
    await fs.save_workflow(analyze_workflow("greet", GREET, "Now managed"))
    got = await fs.get_workflow("greet")
    assert got is not None
    assert got.created_at == old_mtime
    assert got.description == "Now managed"


INVALID_FILES = [
    pytest.param(b"def run(:\n    pass\n", "syntax error", id="syntax-error"),
    pytest.param(b"def main():\n    pass\n", "run", id="no-run"),
    pytest.param(b"def run():\n    return '\xff\xfe'\n", "UTF-8", id="not-utf8"),
]


@pytest.mark.parametrize(("content", "reason"), INVALID_FILES)
async def test_an_invalid_hand_written_file_is_skipped_in_list_with_one_warning(
    fs: FileStorage, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    (fs.base_path / "workflows" / "broken.py").write_bytes(content)
    (fs.base_path / "workflows" / "fine.py").write_text(GREET)
    with caplog.at_level(logging.WARNING, logger="py_code_mode.storage.file"):
        assert [w.name for w in await fs.list_workflows()] == ["fine"]
        assert [w.name for w in await fs.list_workflows()] == ["fine"]
    warnings = [r for r in caplog.records if "broken.py" in r.getMessage()]
    assert len(warnings) == 1
    assert reason in warnings[0].getMessage()


@pytest.mark.parametrize(("content", "reason"), INVALID_FILES)
async def test_getting_an_invalid_hand_written_file_raises_storage_error(
    fs: FileStorage, content: bytes, reason: str
) -> None:
    path = fs.base_path / "workflows" / "broken.py"
    path.write_bytes(content)
    with pytest.raises(StorageError, match=reason) as caught:
        await fs.get_workflow("broken")
    assert str(path) in str(caught.value)
    assert type(caught.value) is StorageError  # agent code knows this class by name


async def test_an_invalid_file_can_be_repaired_by_saving_or_deleting(fs: FileStorage) -> None:
    path = fs.base_path / "workflows" / "broken.py"
    path.write_text("def run(:\n")
    await fs.save_workflow(analyze_workflow("broken", GREET))
    got = await fs.get_workflow("broken")
    assert got is not None
    assert got.source == GREET
    path.write_text("def run(:\n")
    assert await fs.delete_workflow("broken") is True
    assert not path.exists()
    assert await fs.get_workflow("broken") is None


async def test_files_that_cannot_be_workflows_are_ignored(fs: FileStorage) -> None:
    folder = fs.base_path / "workflows"
    for name in ["__init__.py", "_helpers.py", "list.py", "my-flow.py", "class.py", "README.md"]:
        (folder / name).write_text(GREET)
    (folder / "pkg").mkdir()
    (folder / "pkg" / "inner.py").write_text(GREET)
    (folder / "dir_named.py").mkdir()
    (folder / "ok.py").write_text(GREET)
    assert [w.name for w in await fs.list_workflows()] == ["ok"]
    assert await fs.get_workflow("dir_named") is None


async def test_a_badly_named_file_is_reported_once_and_helpers_not_at_all(
    fs: FileStorage, caplog: pytest.LogCaptureFixture
) -> None:
    folder = fs.base_path / "workflows"
    (folder / "my-flow.py").write_text(GREET)
    (folder / "_helpers.py").write_text(GREET)
    with caplog.at_level(logging.WARNING, logger="py_code_mode.storage.file"):
        await fs.list_workflows()
        await fs.list_workflows()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "my-flow.py" in messages[0]


async def test_a_byte_order_mark_in_a_hand_written_file_is_accepted(fs: FileStorage) -> None:
    (fs.base_path / "workflows" / "bom.py").write_bytes(b"\xef\xbb\xbf" + GREET.encode())
    got = await fs.get_workflow("bom")
    assert got is not None
    assert got.source == GREET


async def test_an_unreadable_sidecar_is_ignored_with_a_warning(
    fs: FileStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await fs.save_workflow(analyze_workflow("greet", GREET, "explicit", metadata={"a": 1}))
    (fs.base_path / "workflows" / ".meta" / "greet.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        got = await fs.get_workflow("greet")
    assert got is not None
    assert got.description == "Greet someone by name."
    assert got.metadata == {}
    assert "greet.json" in caplog.text


async def test_saving_an_invalid_workflow_writes_nothing(fs: FileStorage) -> None:
    bogus = analyze_workflow("flow", GREET)
    broken = type(bogus)(name="flow", source="def nope(:\n")
    with pytest.raises(WorkflowError, match="syntax error"):
        await fs.save_workflow(broken)
    with pytest.raises(WorkflowError, match="metadata"):
        await fs.save_workflow(analyze_workflow("flow", GREET, metadata={"x": {1, 2}}))
    assert list((fs.base_path / "workflows").glob("*.py")) == []
    assert await fs.list_workflows() == []


async def test_deleting_a_workflow_removes_its_sidecar(fs: FileStorage) -> None:
    await fs.save_workflow(analyze_workflow("greet", GREET, "x"))
    assert await fs.delete_workflow("greet")
    assert not (fs.base_path / "workflows" / ".meta" / "greet.json").exists()
    assert not (fs.base_path / "workflows" / "greet.py").exists()


async def test_workflow_symlinks_inside_the_folder_are_followed(fs: FileStorage) -> None:
    folder = fs.base_path / "workflows"
    (folder / "real.py").write_text(GREET)
    (folder / "alias.py").symlink_to(folder / "real.py")
    assert [w.name for w in await fs.list_workflows()] == ["alias", "real"]


async def test_workflow_symlinks_leading_outside_are_refused(
    fs: FileStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.py"
    outside.write_text(GREET)
    (fs.base_path / "workflows" / "leak.py").symlink_to(outside)
    assert await fs.list_workflows() == []
    with pytest.raises(StorageError, match="outside"):
        await fs.get_workflow("leak")


async def test_unchanged_workflow_files_are_not_parsed_again(
    fs: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = fs.base_path / "workflows"
    for i in range(30):
        await fs.save_workflow(analyze_workflow(f"flow{i}", f"def run():\n    return {i}\n"))
    for path in [*folder.glob("*.py"), *(folder / ".meta").glob("*.json")]:
        age(path)
    calls: list[str] = []
    real = file_module.analyze_workflow

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(file_module, "analyze_workflow", counting)
    assert len(await fs.list_workflows()) == 30
    assert len(calls) == 30
    assert len(await fs.list_workflows()) == 30
    assert await fs.get_workflow("flow7") is not None
    assert len(calls) == 30  # served from the cache

    (folder / "flow7.py").write_text("def run():\n    return 'changed'\n")
    got = await fs.get_workflow("flow7")
    assert got is not None
    assert "changed" in got.source
    assert calls[30:] == ["flow7"]


async def test_a_recently_rewritten_file_is_never_served_stale(fs: FileStorage) -> None:
    path = fs.base_path / "workflows" / "flow.py"
    path.write_text("def run():\n    return 1\n")
    before = path.stat()
    assert (await fs.get_workflow("flow")) is not None
    with path.open("r+") as handle:  # same inode, same size, mtime put back
        handle.write("def run():\n    return 2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    got = await fs.get_workflow("flow")
    assert got is not None
    assert "return 2" in got.source


# -- artifacts on disk -----------------------------------------------------------------


async def test_an_artifact_cannot_be_both_a_file_and_a_folder(fs: FileStorage) -> None:
    await fs.save_artifact("reports", "a file")
    with pytest.raises(ArtifactError, match="folder"):
        await fs.save_artifact("reports/2024.json", {})
    with pytest.raises(ArtifactError, match="folder"):
        await fs.save_artifact("reports/deeper/x", {})
    await fs.save_artifact("data/x", 1)
    with pytest.raises(ArtifactError, match="folder"):
        await fs.save_artifact("data", "clash")
    assert await fs.load_artifact("reports") == "a file"
    assert await fs.load_artifact("data/x") == 1


async def test_deleting_nested_artifacts_removes_empty_folders(fs: FileStorage) -> None:
    await fs.save_artifact("a/b/c.txt", "x")
    await fs.save_artifact("a/keep.txt", "y")
    assert await fs.delete_artifact("a/b/c.txt")
    root = fs.base_path / "artifacts"
    assert not (root / "a" / "b").exists()
    assert (root / "a" / "keep.txt").exists()
    assert await fs.delete_artifact("a/keep.txt")
    assert not (root / "a").exists()
    assert root.is_dir()


async def test_artifacts_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    fs = FileStorage(tmp_path / "lib", max_artifact_bytes=10)
    await fs.save_artifact("ok", b"x" * 10)
    await fs.save_artifact("text", "y" * 10)
    for value in [b"x" * 11, "y" * 11, "é" * 6, list(range(5))]:
        with pytest.raises(ArtifactError, match=r"limit of 10 bytes"):
            await fs.save_artifact("ok", value)
    assert await fs.load_artifact("ok") == b"x" * 10
    assert [a.name for a in await fs.list_artifacts()] == ["ok", "text"]


async def test_unsupported_type_error_says_what_is_accepted(fs: FileStorage) -> None:
    with pytest.raises(ArtifactError) as caught:
        await fs.save_artifact("s", {1, 2})
    message = str(caught.value)
    assert "set" in message
    for accepted in ["str", "bytes", "dict", "list", "int", "float", "bool", "None"]:
        assert accepted in message


async def test_a_failed_write_keeps_the_old_data_and_leaves_no_temp_files(
    fs: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs.save_artifact("doc", {"v": 1}, description="first")
    await fs.add_dep("attrs")
    await fs.save_workflow(analyze_workflow("greet", GREET))

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_module.os, "fsync", failing_fsync)
    with pytest.raises(StorageError, match="No space left") as caught:
        await fs.save_artifact("doc", {"v": 2}, description="second")
    assert str(fs.base_path / "artifacts") in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StorageError, match=r"requirements\.txt"):
        await fs.add_dep("pandas")
    with pytest.raises(StorageError, match="greet"):
        await fs.save_workflow(analyze_workflow("greet", "def run():\n    return 0\n"))
    monkeypatch.undo()

    assert await fs.load_artifact("doc") == {"v": 1}
    info = await fs.get_artifact_info("doc")
    assert info is not None
    assert info.description == "first"
    assert await fs.list_deps() == ["attrs"]
    got = await fs.get_workflow("greet")
    assert got is not None
    assert got.source == GREET
    assert temp_files(fs.base_path) == []


async def test_a_new_name_syncs_its_folder_and_a_replacement_syncs_only_its_files(
    fs: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    synced: list[str] = []

    def recording(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(file_module.os, "fsync", recording)
    await fs.save_artifact("doc", "first")
    assert synced.count("file") == 2  # payload and index
    assert "folder" in synced  # the new name is durable once the save returns

    synced.clear()
    await fs.save_artifact("doc", "second")
    assert synced == ["file", "file"]  # both written whole before their renames
    monkeypatch.undo()
    assert await FileStorage(fs.base_path).load_artifact("doc") == "second"


async def test_a_failed_final_rename_leaves_index_and_payload_matching(
    fs: FileStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fs.save_artifact("doc", b"old bytes", description="first")
    await fs.save_workflow(analyze_workflow("greet", GREET, "first words"))
    real_replace = os.replace
    targets = {
        os.fspath(fs.base_path / "artifacts" / "doc"),
        os.fspath(fs.base_path / "workflows" / "greet.py"),
    }

    def replace(src: Any, dst: Any) -> None:
        if os.fspath(dst) in targets:
            raise OSError(5, "Input/output error", os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(file_module.os, "replace", replace)
    with pytest.raises(StorageError, match="Input/output error"):
        await fs.save_artifact("doc", {"new": "json"}, description="second")
    with pytest.raises(StorageError, match="Input/output error"):
        await fs.save_workflow(analyze_workflow("greet", "def run():\n    pass\n", "other"))
    monkeypatch.undo()

    other = FileStorage(fs.base_path)  # no in-memory cache
    assert await other.load_artifact("doc") == b"old bytes"
    info = await other.get_artifact_info("doc")
    assert info is not None
    assert (info.kind, info.description) == ("bytes", "first")
    got = await other.get_workflow("greet")
    assert got is not None
    assert (got.source, got.description) == (GREET, "first words")
    assert temp_files(fs.base_path) == []


async def test_os_errors_become_storage_errors_naming_the_path(fs: FileStorage) -> None:
    requirements = fs.base_path / "requirements.txt"
    requirements.mkdir()
    with pytest.raises(StorageError, match=re.escape(str(requirements))) as caught:
        await fs.list_deps()
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(StorageError, match=re.escape(str(requirements))):
        await fs.add_dep("attrs")


async def test_reading_works_when_the_lock_file_cannot_be_opened(fs: FileStorage) -> None:
    await fs.save_artifact("a", {"x": 1})
    lock = fs.base_path / ".lock"
    lock.unlink()
    lock.mkdir()  # stands in for read-only media: the lock file cannot be opened
    assert await fs.load_artifact("a") == {"x": 1}
    with pytest.raises(StorageError, match=re.escape(str(lock))):
        await fs.save_artifact("a", {"x": 2})


async def test_a_corrupt_index_raises_storage_error_naming_it(fs: FileStorage) -> None:
    await fs.save_artifact("a", 1)
    index = fs.base_path / "artifacts" / ".index.json"
    index.write_text("{broken")
    with pytest.raises(StorageError, match=re.escape(str(index))):
        await fs.list_artifacts()
    with pytest.raises(StorageError, match=re.escape(str(index))):
        await fs.load_artifact("a")


async def test_bad_entries_in_a_hand_edited_index_are_skipped(
    fs: FileStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await fs.save_artifact("good", 1)
    index = fs.base_path / "artifacts" / ".index.json"
    doc = json.loads(index.read_text())
    doc["artifacts"]["../escape"] = dict(doc["artifacts"]["good"])
    doc["artifacts"]["weird"] = {**doc["artifacts"]["good"], "kind": "pickle"}
    doc["artifacts"]["junk"] = "not an object"
    index.write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING):
        assert [a.name for a in await fs.list_artifacts()] == ["good"]
    assert "pickle" in caplog.text


async def test_an_artifact_file_removed_by_hand_is_reported_not_found(fs: FileStorage) -> None:
    await fs.save_artifact("gone", "x")
    (fs.base_path / "artifacts" / "gone").unlink()
    with pytest.raises(ArtifactNotFoundError, match="by hand"):
        await fs.load_artifact("gone")
    assert await fs.delete_artifact("gone") is True
    assert await fs.list_artifacts() == []


async def test_an_artifact_file_edited_into_garbage_is_reported(fs: FileStorage) -> None:
    await fs.save_artifact("doc", {"a": 1})
    (fs.base_path / "artifacts" / "doc").write_text("{oops")
    with pytest.raises(ArtifactError, match="json"):
        await fs.load_artifact("doc")


async def test_hand_placed_artifact_files_are_not_artifacts(fs: FileStorage) -> None:
    (fs.base_path / "artifacts" / "stray.txt").write_text("x")
    assert await fs.list_artifacts() == []
    with pytest.raises(ArtifactNotFoundError):
        await fs.load_artifact("stray.txt")


# -- symlinks under artifacts/ ---------------------------------------------------------


async def test_saving_through_a_symlinked_folder_leading_outside_is_refused(
    fs: FileStorage, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (fs.base_path / "artifacts" / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="outside"):
        await fs.save_artifact("sub/x", "secret")
    with pytest.raises(ArtifactError, match="outside"):
        await fs.save_artifact("sub/new/deeper", "secret")
    assert list(outside.iterdir()) == []
    assert await fs.list_artifacts() == []


async def test_loading_through_a_symlinked_folder_leading_outside_is_refused(
    fs: FileStorage, tmp_path: Path
) -> None:
    await fs.save_artifact("sub/x", "inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x").write_text("outside data")
    sub = fs.base_path / "artifacts" / "sub"
    (sub / "x").unlink()
    sub.rmdir()
    sub.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArtifactError, match="outside"):
        await fs.load_artifact("sub/x")
    with pytest.raises(ArtifactError, match="outside"):
        await fs.delete_artifact("sub/x")
    assert (outside / "x").read_text() == "outside data"


async def test_an_artifact_symlinked_to_a_file_outside_is_refused(
    fs: FileStorage, tmp_path: Path
) -> None:
    await fs.save_artifact("leak", "inside")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    link = fs.base_path / "artifacts" / "leak"
    link.unlink()
    link.symlink_to(secret)
    with pytest.raises(ArtifactError, match="outside"):
        await fs.load_artifact("leak")
    with pytest.raises(ArtifactError, match="outside"):
        await fs.save_artifact("leak", "overwrite")
    assert secret.read_text() == "password"


async def test_symlinks_within_the_artifact_store_are_allowed(fs: FileStorage) -> None:
    await fs.save_artifact("real/x", "data")
    (fs.base_path / "artifacts" / "alias").symlink_to(
        fs.base_path / "artifacts" / "real", target_is_directory=True
    )
    await fs.save_artifact("alias/y", "more")
    assert await fs.load_artifact("alias/y") == "more"
    assert (fs.base_path / "artifacts" / "real" / "y").read_text() == "more"


async def test_the_artifacts_folder_itself_may_be_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "big-disk"
    elsewhere.mkdir()
    base = tmp_path / "lib"
    base.mkdir()
    (base / "artifacts").symlink_to(elsewhere, target_is_directory=True)
    fs = FileStorage(base)
    await fs.save_artifact("a/b", b"ok")
    assert await fs.load_artifact("a/b") == b"ok"
    assert (elsewhere / "a" / "b").read_bytes() == b"ok"


# -- requirements.txt ------------------------------------------------------------------

HAND_REQUIREMENTS = """\
\ufeff# Project deps, maintained by hand and by agents

requests>=2.31  # HTTP
   pandas

--index-url https://example.org/simple
attrs==23.1.0
"""


async def test_hand_written_requirements_are_read_without_comments(fs: FileStorage) -> None:
    (fs.base_path / "requirements.txt").write_text(HAND_REQUIREMENTS)
    assert await fs.list_deps() == [
        "requests>=2.31",
        "pandas",
        "--index-url https://example.org/simple",
        "attrs==23.1.0",
    ]


async def test_editing_deps_keeps_comments_and_other_lines(fs: FileStorage) -> None:
    path = fs.base_path / "requirements.txt"
    path.write_text(HAND_REQUIREMENTS)
    await fs.add_dep("pandas>=2")
    await fs.add_dep("typer")
    assert await fs.remove_dep("attrs")
    text = path.read_text()
    assert text.splitlines() == [
        "# Project deps, maintained by hand and by agents",
        "",
        "requests>=2.31  # HTTP",
        "pandas>=2",
        "",
        "--index-url https://example.org/simple",
        "typer",
    ]


async def test_duplicate_entries_collapse_when_the_dep_is_replaced(fs: FileStorage) -> None:
    (fs.base_path / "requirements.txt").write_text("numpy\nrequests\nNumPy<2\n")
    await fs.add_dep("numpy>=2")
    assert await fs.list_deps() == ["numpy>=2", "requests"]


async def test_removing_a_dep_drops_every_entry_for_it(fs: FileStorage) -> None:
    (fs.base_path / "requirements.txt").write_text("numpy\nrequests\nNumPy<2\n")
    assert await fs.remove_dep("numpy")
    assert await fs.list_deps() == ["requests"]


async def test_requirements_that_are_not_utf8_raise_storage_error(fs: FileStorage) -> None:
    (fs.base_path / "requirements.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(StorageError, match=r"requirements\.txt"):
        await fs.list_deps()


# -- several processes -----------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from py_code_mode._private.workflow_source import analyze_workflow
    from py_code_mode.storage.file import FileStorage

    async def main(base: str, wid: int, count: int, go: str) -> None:
        deadline = time.monotonic() + 60
        while not Path(go).exists():
            if time.monotonic() > deadline:
                raise SystemExit("start signal never came")
            time.sleep(0.005)
        fs = FileStorage(base)
        await fs.open()
        for i in range(count):
            await fs.save_artifact(f"w{wid}/a{i}", {"w": wid, "i": i}, metadata={"i": i})
            await fs.save_artifact("shared", {"w": wid, "i": i})
            await fs.add_dep(f"pkg-{wid}-{i}")
            await fs.add_dep(f"common=={i}")
            src = f"def run():\\n    return {wid * 1000 + i}\\n"
            await fs.save_workflow(analyze_workflow(f"flow_{wid}_{i}", src))
            await fs.put_vectors("model", {f"{wid}-{i}": [float(wid), float(i)]})
            if i % 5 == 4:
                await fs.delete_artifact(f"w{wid}/a{i}")
        await fs.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
    """
)


@pytest.mark.slow
async def test_several_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    base = tmp_path / "shared-lib"
    workers, count = 4, 20
    run_concurrent_writers(WRITER, base, workers, count)

    fs = FileStorage(base)
    kept = {f"w{w}/a{i}" for w in range(workers) for i in range(count) if i % 5 != 4}
    expected = kept | {"shared"}
    infos = await fs.list_artifacts()
    assert {a.name for a in infos} == expected
    for info in infos:
        value = await fs.load_artifact(info.name)
        if info.name != "shared":
            assert value == {"w": int(info.name[1]), "i": info.metadata["i"]}
    shared = await fs.load_artifact("shared")
    assert isinstance(shared, dict)
    assert shared["i"] == count - 1

    deps = await fs.list_deps()
    assert sorted(d for d in deps if d.startswith("pkg-")) == sorted(
        f"pkg-{w}-{i}" for w in range(workers) for i in range(count)
    )
    assert [d for d in deps if d.startswith("common")] == [f"common=={count - 1}"]

    flows = await fs.list_workflows()
    assert len(flows) == workers * count
    assert all(f.source.startswith("def run():") for f in flows)

    keys = [f"{w}-{i}" for w in range(workers) for i in range(count)]
    vectors = await fs.get_vectors("model", keys)
    assert set(vectors) == set(keys)
    assert vectors["3-7"] == [3.0, 7.0]

    assert temp_files(base) == []
    json.loads((base / "artifacts" / ".index.json").read_text())
    for sidecar in (base / "workflows" / ".meta").glob("*.json"):
        json.loads(sidecar.read_text())
