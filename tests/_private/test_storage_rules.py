"""Rules every storage backend applies the same way (arguments, index entries)."""

from __future__ import annotations

import array
from typing import Any

import pytest

from py_code_mode._private.storage_rules import (
    BadEntryError,
    artifact_info_from_entry,
    check_model_id,
    check_vector_keys,
    convert_vectors,
    dep_spec,
    dep_target,
    workflow_metadata,
    workflow_source_bytes,
)
from py_code_mode.errors import (
    DependencyError,
    StorageError,
    WorkflowError,
)
from py_code_mode.models import WorkflowRecord

# -- artifacts -------------------------------------------------------------------------


def test_names_and_creation_times_kept_outside_an_entry_win() -> None:
    entry = {"name": "old", "kind": "json", "size": 3, "created_at": 1.0, "updated_at": 2.0}
    info = artifact_info_from_entry(entry, name="new", created_at=5.0)
    assert (info.name, info.kind, info.size, info.created_at, info.updated_at) == (
        "new",
        "json",
        3,
        5.0,
        2.0,
    )
    assert entry["name"] == "old"  # the caller's document is left alone


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"kind": "pickle"}, "has unknown kind 'pickle'"),
        ({}, "has unknown kind None"),
        ([1], "holds list, not a JSON object"),
        ({"kind": "str", "size": "big"}, "is malformed"),
        ({"kind": "str"}, "is malformed"),  # no name anywhere
    ],
)
def test_unreadable_entries_say_what_is_wrong(entry: Any, reason: str) -> None:
    with pytest.raises(BadEntryError, match=reason):
        artifact_info_from_entry(entry)


def test_an_entry_naming_an_unsafe_artifact_is_malformed() -> None:
    with pytest.raises(BadEntryError, match="is malformed"):
        artifact_info_from_entry({"kind": "str", "name": "../x"})


# -- workflows -------------------------------------------------------------------------


def test_workflow_metadata_must_be_json_data() -> None:
    ok = WorkflowRecord(name="w", source="", metadata={"tags": ["a"]})
    assert workflow_metadata(ok) == {"tags": ["a"]}
    bad = WorkflowRecord(name="w", source="", metadata={"when": float("nan")})
    with pytest.raises(WorkflowError, match="metadata of workflow 'w'"):
        workflow_metadata(bad)


def test_source_with_a_lone_surrogate_is_refused_as_not_utf8() -> None:
    assert workflow_source_bytes("w", "def run():\n    return 'é'\n").endswith(b"'\xc3\xa9'\n")
    with pytest.raises(WorkflowError, match="not encodable as UTF-8"):
        workflow_source_bytes("w", "x = '\ud800'")


# -- deps --------------------------------------------------------------------------------


def test_a_spec_is_stripped_and_named_by_its_canonical_distribution() -> None:
    assert dep_spec("  Requests_OAuthlib>=1.3 ") == ("Requests_OAuthlib>=1.3", "requests-oauthlib")
    assert dep_target(" Requests_OAuthlib ") == "requests-oauthlib"


@pytest.mark.parametrize("spec", ["", "   ", "a\nb", "a\rb", "a\0", 3, None])
def test_a_spec_must_be_one_requirement_on_one_line(spec: Any) -> None:
    with pytest.raises(DependencyError, match="one-line requirement"):
        dep_spec(spec)


@pytest.mark.parametrize("name", ["", "  ", None, 3])
def test_a_name_to_remove_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(DependencyError, match="non-empty string"):
        dep_target(name)


# -- embedding cache ---------------------------------------------------------------------


@pytest.mark.parametrize("model_id", ["", None, 3])
def test_a_model_id_must_be_a_non_empty_string(model_id: Any) -> None:
    with pytest.raises(StorageError, match="model id"):
        check_model_id(model_id)


def test_a_single_string_of_keys_is_refused() -> None:
    check_vector_keys(["a", "b"])
    with pytest.raises(StorageError, match="not a single string"):
        check_vector_keys("ab")


def test_vectors_are_converted_and_bad_ones_name_their_key() -> None:
    def to_doubles(vector: Any) -> array.array[float]:
        return array.array("d", vector)

    converted = convert_vectors({"k": [1, 2.5]}, to_doubles)
    assert {k: v.tolist() for k, v in converted.items()} == {"k": [1.0, 2.5]}
    with pytest.raises(StorageError, match="embedding for key 'bad' must be a sequence of numbers"):
        convert_vectors({"ok": [1.0], "bad": ["1.0"]}, to_doubles)
    with pytest.raises(StorageError, match="keys must be strings, got 7"):
        convert_vectors({7: [1.0]}, to_doubles)  # type: ignore[dict-item]
