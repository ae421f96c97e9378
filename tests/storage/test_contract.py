"""Behaviour every StorageBackend must have; runs against each backend in conftest.BACKENDS.

Only the Protocol is used here, nothing backend-specific.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    DependencyError,
    PyCodeModeError,
    StorageError,
)
from py_code_mode.models import WorkflowRecord
from py_code_mode.storage.protocol import StorageBackend

from .conftest import MakeStorage

FETCH = '''\
import json


def run(url: str, timeout: float = 10.0) -> dict:
    """Fetch a URL and parse the JSON body.

    Longer explanation that is not part of the description.
    """
    return {"url": url}
'''

ASYNC_FLOW = '''\
async def run(*, n: int) -> int:
    """Count to n."""
    return n
'''


def workflow(name: str, source: str = FETCH, description: str = "", **kw: Any) -> WorkflowRecord:
    return analyze_workflow(name, source, description, **kw)


async def tick() -> None:
    """Let the clock move so that a later timestamp is strictly larger."""
    await asyncio.sleep(0.02)


# -- lifecycle -------------------------------------------------------------------------


async def test_backend_satisfies_the_storage_protocol(storage: StorageBackend) -> None:
    assert isinstance(storage, StorageBackend)


async def test_open_and_close_can_be_called_twice(storage: StorageBackend) -> None:
    await storage.open()
    await storage.open()
    await storage.close()
    await storage.close()


async def test_a_fresh_backend_is_empty(storage: StorageBackend) -> None:
    assert await storage.list_workflows() == []
    assert await storage.list_artifacts() == []
    assert await storage.list_deps() == []
    assert await storage.get_vectors("model", ["k"]) == {}


# -- artifacts -------------------------------------------------------------------------

ROUND_TRIP_VALUES: list[Any] = [
    pytest.param("hello", id="str"),
    pytest.param("", id="empty-str"),
    pytest.param("héllo wörld ✓ 漢字 \U0001f600\n\r\n\t", id="unicode-str"),
    pytest.param('{"looks": "like json"}', id="str-that-looks-like-json"),
    pytest.param(b"\x00\x01\xff" + bytes(range(256)), id="bytes"),
    pytest.param(b"", id="empty-bytes"),
    pytest.param(b"plain ascii", id="ascii-bytes"),
    pytest.param({"a": 1, "b": [1, 2.5, None, True], "c": {"d": "e"}}, id="dict"),
    pytest.param({}, id="empty-dict"),
    pytest.param([1, "two", 3.0, False, None, [], {}], id="list"),
    pytest.param([], id="empty-list"),
    pytest.param(42, id="int"),
    pytest.param(-(2**70), id="big-int"),
    pytest.param(0, id="zero"),
    pytest.param(3.14159, id="float"),
    pytest.param(1.0, id="integral-float"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(None, id="none"),
    pytest.param({"ünï": "cødé", "emoji": "\U0001f600"}, id="unicode-json"),
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES)
async def test_loading_returns_the_value_and_type_that_was_saved(
    storage: StorageBackend, value: Any
) -> None:
    await storage.save_artifact("thing", value)
    loaded = await storage.load_artifact("thing")
    assert loaded == value
    assert type(loaded) is type(value)
    if isinstance(value, list | dict):
        assert repr(loaded) == repr(value)  # nested bool/float/int survive too


@pytest.mark.parametrize(
    ("value", "kind"),
    [("text", "str"), (b"raw", "bytes"), ({"a": 1}, "json"), (7, "json"), (None, "json")],
)
async def test_saved_artifact_info_reports_its_kind(
    storage: StorageBackend, value: Any, kind: str
) -> None:
    info = await storage.save_artifact("thing", value)
    assert info.kind == kind
    assert info.name == "thing"
    assert (await storage.get_artifact_info("thing")) == info


async def test_artifact_size_is_the_stored_payload_size(storage: StorageBackend) -> None:
    info = await storage.save_artifact("blob", b"x" * 1234)
    assert info.size == 1234
    info = await storage.save_artifact("text", "é")  # two bytes in UTF-8
    assert info.size >= 1


async def test_artifact_names_may_contain_folders(storage: StorageBackend) -> None:
    await storage.save_artifact("reports/2024/q1.json", {"q": 1})
    await storage.save_artifact("reports/summary.txt", "ok")
    assert await storage.load_artifact("reports/2024/q1.json") == {"q": 1}
    assert [a.name for a in await storage.list_artifacts()] == [
        "reports/2024/q1.json",
        "reports/summary.txt",
    ]


async def test_overwriting_an_artifact_keeps_created_at_and_moves_updated_at(
    storage: StorageBackend,
) -> None:
    first = await storage.save_artifact("a", "one")
    await tick()
    second = await storage.save_artifact("a", "two")
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert await storage.load_artifact("a") == "two"
    assert len(await storage.list_artifacts()) == 1


async def test_overwriting_an_artifact_may_change_its_type(storage: StorageBackend) -> None:
    await storage.save_artifact("a", b"bytes first")
    await storage.save_artifact("a", {"then": "json"})
    assert await storage.load_artifact("a") == {"then": "json"}
    await storage.save_artifact("a", "then text")
    assert await storage.load_artifact("a") == "then text"
    info = await storage.get_artifact_info("a")
    assert info is not None
    assert info.kind == "str"


async def test_description_and_metadata_are_persisted(storage: StorageBackend) -> None:
    meta = {"source": "https://example.org", "rows": 3, "tags": ["a", "b"], "nested": {"x": None}}
    info = await storage.save_artifact("data.csv", "a,b\n", description="Sample", metadata=meta)
    assert info.description == "Sample"
    assert info.metadata == meta
    stored = await storage.get_artifact_info("data.csv")
    assert stored is not None
    assert stored.description == "Sample"
    assert stored.metadata == meta
    (listed,) = await storage.list_artifacts()
    assert listed.metadata == meta
    assert listed.description == "Sample"


async def test_overwrite_replaces_description_and_metadata(storage: StorageBackend) -> None:
    await storage.save_artifact("a", 1, description="old", metadata={"v": 1})
    await storage.save_artifact("a", 2)
    info = await storage.get_artifact_info("a")
    assert info is not None
    assert info.description == ""
    assert info.metadata == {}


async def test_artifacts_are_listed_sorted_by_name(storage: StorageBackend) -> None:
    for name in ["zeta", "alpha", "b/two", "b/one", "Beta", "a1", "a"]:
        await storage.save_artifact(name, name)
    names = [a.name for a in await storage.list_artifacts()]
    assert names == sorted(names)
    assert set(names) == {"zeta", "alpha", "b/two", "b/one", "Beta", "a1", "a"}


async def test_deleting_an_artifact_returns_whether_it_existed(storage: StorageBackend) -> None:
    await storage.save_artifact("a", "x")
    assert await storage.delete_artifact("a") is True
    assert await storage.delete_artifact("a") is False
    assert await storage.delete_artifact("never") is False
    assert await storage.get_artifact_info("a") is None
    assert await storage.list_artifacts() == []
    with pytest.raises(ArtifactNotFoundError):
        await storage.load_artifact("a")


async def test_deleting_one_artifact_leaves_the_others(storage: StorageBackend) -> None:
    await storage.save_artifact("dir/a", "a")
    await storage.save_artifact("dir/b", "b")
    assert await storage.delete_artifact("dir/a")
    assert await storage.load_artifact("dir/b") == "b"
    assert [a.name for a in await storage.list_artifacts()] == ["dir/b"]


async def test_loading_a_missing_artifact_raises_not_found(storage: StorageBackend) -> None:
    with pytest.raises(ArtifactNotFoundError, match="nope") as caught:
        await storage.load_artifact("nope")
    assert isinstance(caught.value, KeyError)
    assert isinstance(caught.value, PyCodeModeError)


async def test_info_of_a_missing_artifact_is_none(storage: StorageBackend) -> None:
    assert await storage.get_artifact_info("nope") is None


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        pytest.param({1, 2}, "set", id="set"),
        pytest.param(object(), "object", id="object"),
        pytest.param((1, 2), "tuple", id="tuple"),
        pytest.param(1 + 2j, "complex", id="complex"),
        pytest.param(bytearray(b"x"), "bytearray", id="bytearray"),
        pytest.param({"a": {1, 2}}, "set", id="nested-set"),
        pytest.param([1, (2, 3)], "tuple", id="nested-tuple"),
        pytest.param({"a": [b"raw"]}, "bytes", id="nested-bytes"),
    ],
)
async def test_unsupported_types_are_rejected_naming_the_type(
    storage: StorageBackend, value: Any, type_name: str
) -> None:
    with pytest.raises(ArtifactError, match=type_name) as caught:
        await storage.save_artifact("bad", value)
    assert not isinstance(caught.value, ArtifactNotFoundError)
    assert await storage.list_artifacts() == []


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({1: "a"}, id="int-key"),
        pytest.param(math.nan, id="nan"),
        pytest.param([math.inf], id="inf"),
    ],
)
async def test_values_that_would_not_load_back_unchanged_are_rejected(
    storage: StorageBackend, value: Any
) -> None:
    with pytest.raises(ArtifactError):
        await storage.save_artifact("bad", value)
    assert await storage.get_artifact_info("bad") is None


async def test_circular_values_are_rejected(storage: StorageBackend) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ArtifactError):
        await storage.save_artifact("bad", loop)


async def test_metadata_that_is_not_json_is_rejected(storage: StorageBackend) -> None:
    with pytest.raises(ArtifactError, match="metadata"):
        await storage.save_artifact("a", "x", metadata={"when": object()})
    assert await storage.get_artifact_info("a") is None


async def test_a_failed_save_keeps_the_previous_value(storage: StorageBackend) -> None:
    await storage.save_artifact("keep", {"v": 1}, description="original")
    with pytest.raises(ArtifactError):
        await storage.save_artifact("keep", {"v": {2, 3}}, description="broken")
    assert await storage.load_artifact("keep") == {"v": 1}
    info = await storage.get_artifact_info("keep")
    assert info is not None
    assert info.description == "original"


async def test_shared_sub_values_are_fine(storage: StorageBackend) -> None:
    shared = [1, 2]
    await storage.save_artifact("a", {"x": shared, "y": shared})
    assert await storage.load_artifact("a") == {"x": [1, 2], "y": [1, 2]}


async def test_concurrent_saves_from_one_instance_all_land(storage: StorageBackend) -> None:
    await asyncio.gather(*(storage.save_artifact(f"item{i}", i) for i in range(40)))
    names = {a.name for a in await storage.list_artifacts()}
    assert names == {f"item{i}" for i in range(40)}
    assert await storage.load_artifact("item17") == 17


# -- workflows -------------------------------------------------------------------------


async def test_saved_workflow_comes_back_whole(storage: StorageBackend) -> None:
    record = workflow("fetch_json", metadata={"author": "agent", "n": 1})
    await storage.save_workflow(record)
    got = await storage.get_workflow("fetch_json")
    assert got is not None
    assert got.name == "fetch_json"
    assert got.source == FETCH
    assert got.description == "Fetch a URL and parse the JSON body."
    assert got.parameters == record.parameters
    assert [p.name for p in got.parameters] == ["url", "timeout"]
    assert got.is_async is False
    assert got.metadata == {"author": "agent", "n": 1}
    assert got.created_at == pytest.approx(record.created_at)
    assert got.updated_at == pytest.approx(record.updated_at)


async def test_async_workflows_are_marked_async(storage: StorageBackend) -> None:
    await storage.save_workflow(workflow("count", ASYNC_FLOW))
    got = await storage.get_workflow("count")
    assert got is not None
    assert got.is_async is True
    assert got.parameters[0].kind == "keyword_only"


async def test_explicit_workflow_description_is_kept(storage: StorageBackend) -> None:
    await storage.save_workflow(workflow("fetch_json", description="Get JSON from the web"))
    got = await storage.get_workflow("fetch_json")
    assert got is not None
    assert got.description == "Get JSON from the web"


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("def run():\r\n    return 1\r\n", id="crlf"),
        pytest.param("def run():\n    return 'no trailing newline'", id="no-final-newline"),
        pytest.param("# ünïcødé ✓\ndef run():\n    return '漢字'\n", id="unicode"),
        pytest.param("\n\n\ndef run():\n\treturn 1\n\n\n", id="blank-lines-and-tabs"),
    ],
)
async def test_workflow_source_is_kept_exactly(storage: StorageBackend, source: str) -> None:
    await storage.save_workflow(workflow("exact", source))
    got = await storage.get_workflow("exact")
    assert got is not None
    assert got.source == source


async def test_missing_workflow_is_none(storage: StorageBackend) -> None:
    assert await storage.get_workflow("absent") is None


async def test_workflows_are_listed_sorted_by_name(storage: StorageBackend) -> None:
    for name in ["zeta", "alpha", "Mid", "beta2", "beta"]:
        await storage.save_workflow(workflow(name))
    names = [w.name for w in await storage.list_workflows()]
    assert names == sorted(["zeta", "alpha", "Mid", "beta2", "beta"])


async def test_overwriting_a_workflow_keeps_created_at_and_replaces_source(
    storage: StorageBackend,
) -> None:
    first = workflow("flow", "def run():\n    return 1\n", description="v1")
    await storage.save_workflow(first)
    await tick()
    second = workflow("flow", "def run(x: int):\n    return x\n", description="v2")
    await storage.save_workflow(second)
    got = await storage.get_workflow("flow")
    assert got is not None
    assert got.source == second.source
    assert got.description == "v2"
    assert [p.name for p in got.parameters] == ["x"]
    assert got.created_at == pytest.approx(first.created_at)
    assert got.updated_at > got.created_at
    assert len(await storage.list_workflows()) == 1


async def test_deleting_a_workflow_returns_whether_it_existed(storage: StorageBackend) -> None:
    await storage.save_workflow(workflow("flow"))
    assert await storage.delete_workflow("flow") is True
    assert await storage.delete_workflow("flow") is False
    assert await storage.get_workflow("flow") is None
    assert await storage.list_workflows() == []


# -- deps ------------------------------------------------------------------------------


async def test_deps_are_listed_in_insertion_order(storage: StorageBackend) -> None:
    for spec in ["requests>=2.31", "pandas", "attrs==23.1.0"]:
        await storage.add_dep(spec)
    assert await storage.list_deps() == ["requests>=2.31", "pandas", "attrs==23.1.0"]


async def test_adding_a_dep_again_replaces_the_entry_in_place(storage: StorageBackend) -> None:
    await storage.add_dep("requests")
    await storage.add_dep("pandas>=1")
    await storage.add_dep("attrs")
    await storage.add_dep("pandas>=2,<3")
    assert await storage.list_deps() == ["requests", "pandas>=2,<3", "attrs"]


async def test_replacement_uses_the_canonical_distribution_name(storage: StorageBackend) -> None:
    await storage.add_dep("Foo_Bar==1.0")
    await storage.add_dep("foo-bar==2.0")
    await storage.add_dep("FOO.BAR[extra]>=3")
    deps = await storage.list_deps()
    assert len(deps) == 1
    assert deps[0].endswith(">=3")


async def test_removing_a_dep_accepts_a_name_or_a_spec(storage: StorageBackend) -> None:
    await storage.add_dep("pandas>=2")
    await storage.add_dep("requests")
    await storage.add_dep("Foo_Bar")
    assert await storage.remove_dep("pandas>=2.1") is True
    assert await storage.remove_dep("REQUESTS") is True
    assert await storage.remove_dep("foo.bar") is True
    assert await storage.list_deps() == []


async def test_removing_an_absent_dep_returns_false(storage: StorageBackend) -> None:
    await storage.add_dep("requests")
    assert await storage.remove_dep("pandas") is False
    assert await storage.list_deps() == ["requests"]


@pytest.mark.parametrize("bad", ["not a name!!", "", "   "])
async def test_removing_with_an_invalid_name_raises(storage: StorageBackend, bad: str) -> None:
    with pytest.raises(DependencyError):
        await storage.remove_dep(bad)


@pytest.mark.parametrize("bad", ["", "two\nlines", "not a spec!!", "# comment"])
async def test_adding_something_that_is_not_a_requirement_raises(
    storage: StorageBackend, bad: str
) -> None:
    with pytest.raises(DependencyError):
        await storage.add_dep(bad)
    assert await storage.list_deps() == []


# -- embedding cache -------------------------------------------------------------------


async def test_vectors_come_back_for_hits_only(storage: StorageBackend) -> None:
    await storage.put_vectors("model-a", {"k1": [0.1, 0.2, 0.3], "k2": [1.0, -1.0, 0.0]})
    got = await storage.get_vectors("model-a", ["k1", "missing", "k2"])
    assert set(got) == {"k1", "k2"}
    assert got["k1"] == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)
    assert got["k2"] == pytest.approx([1.0, -1.0, 0.0])
    assert await storage.get_vectors("model-a", []) == {}


async def test_vectors_of_different_models_are_isolated(storage: StorageBackend) -> None:
    await storage.put_vectors("BAAI/bge-small-en-v1.5", {"k": [1.0, 2.0]})
    await storage.put_vectors("BAAI_bge-small-en-v1.5", {"k": [3.0, 4.0]})
    assert await storage.get_vectors("other", ["k"]) == {}
    small = await storage.get_vectors("BAAI/bge-small-en-v1.5", ["k"])
    assert small["k"] == pytest.approx([1.0, 2.0])
    lookalike = await storage.get_vectors("BAAI_bge-small-en-v1.5", ["k"])
    assert lookalike["k"] == pytest.approx([3.0, 4.0])


async def test_putting_vectors_adds_to_and_replaces_cached_ones(storage: StorageBackend) -> None:
    await storage.put_vectors("m", {"a": [1.0], "b": [2.0]})
    await storage.put_vectors("m", {"b": [20.0], "c": [3.0]})
    got = await storage.get_vectors("m", ["a", "b", "c"])
    assert got == {"a": pytest.approx([1.0]), "b": pytest.approx([20.0]), "c": pytest.approx([3.0])}


async def test_vectors_accept_any_float_sequence(storage: StorageBackend) -> None:
    await storage.put_vectors("m", {"t": (1, 2.5, -3)})
    assert (await storage.get_vectors("m", ["t"]))["t"] == pytest.approx([1.0, 2.5, -3.0])


@pytest.mark.parametrize("bad", [["1.5"], b"\x00\x00\x80?", None])
async def test_vectors_of_anything_but_numbers_are_refused(
    storage: StorageBackend, bad: Any
) -> None:
    with pytest.raises(StorageError, match="sequence of numbers"):
        await storage.put_vectors("m", {"k": bad})


# -- reopening -------------------------------------------------------------------------


async def test_a_second_instance_on_the_same_place_sees_everything(
    make_storage: MakeStorage,
) -> None:
    first = await make_storage()
    await first.save_artifact("bin", b"\x00\xff", description="d", metadata={"m": 1})
    await first.save_artifact("doc", {"k": [1, 2]})
    await first.save_workflow(workflow("fetch_json", description="Explicit"))
    await first.add_dep("requests>=2")
    await first.put_vectors("m", {"h": [0.5, 0.25]})
    await first.close()

    second = await make_storage()
    assert await second.load_artifact("bin") == b"\x00\xff"
    assert await second.load_artifact("doc") == {"k": [1, 2]}
    info = await second.get_artifact_info("bin")
    assert info is not None
    assert (info.description, info.metadata, info.kind) == ("d", {"m": 1}, "bytes")
    got = await second.get_workflow("fetch_json")
    assert got is not None
    assert (got.source, got.description) == (FETCH, "Explicit")
    assert [w.name for w in await second.list_workflows()] == ["fetch_json"]
    assert await second.list_deps() == ["requests>=2"]
    assert (await second.get_vectors("m", ["h"]))["h"] == pytest.approx([0.5, 0.25])


async def test_two_open_instances_see_each_others_writes(make_storage: MakeStorage) -> None:
    one = await make_storage()
    two = await make_storage()
    await one.save_artifact("a", 1)
    assert await two.load_artifact("a") == 1
    await two.save_artifact("a", 2)
    assert await one.load_artifact("a") == 2
    await one.save_workflow(workflow("flow"))
    assert await two.get_workflow("flow") is not None
    assert await two.delete_workflow("flow")
    assert await one.get_workflow("flow") is None
    await one.add_dep("attrs")
    await two.add_dep("pandas")
    assert await one.list_deps() == ["attrs", "pandas"]
