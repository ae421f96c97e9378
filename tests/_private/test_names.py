"""Name validation shared by every storage backend."""

from __future__ import annotations

import keyword
from typing import Any

import pytest

from py_code_mode._private.names import (
    RESERVED_WORKFLOW_NAMES,
    is_keyword,
    validate_artifact_name,
    validate_workflow_name,
)
from py_code_mode.errors import InvalidNameError

# -- workflows -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fetch_json", "a", "A1", "camelCase", "x_y_z", "run2", "Type"])
def test_identifiers_are_accepted_and_returned(name: str) -> None:
    assert validate_workflow_name(name) == name


@pytest.mark.parametrize("name", [None, 1, b"fetch", ["a"]])
def test_a_workflow_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(InvalidNameError, match="non-empty string"):
        validate_workflow_name(name)


@pytest.mark.parametrize(
    "name", ["", "1abc", "with-dash", "with space", "dot.name", "../x", "/etc/passwd", "a\x00b"]
)
def test_workflow_names_that_are_not_identifiers_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_workflow_name(name)


def test_non_ascii_identifiers_are_rejected() -> None:
    assert "ünïcode".isidentifier()
    with pytest.raises(InvalidNameError, match="ASCII"):
        validate_workflow_name("ünïcode")


@pytest.mark.parametrize("name", sorted(keyword.kwlist))
def test_keywords_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_workflow_name(name)


@pytest.mark.parametrize("name", ["match", "case", "type", "_"])
def test_soft_keywords_are_rejected_on_every_python_version(name: str) -> None:
    # 'type' became a soft keyword in 3.12; the rule must not depend on the interpreter
    with pytest.raises(InvalidNameError):
        validate_workflow_name(name)


@pytest.mark.parametrize(
    ("name", "expected"), [("class", True), ("match", True), ("type", True), ("name", False)]
)
def test_soft_keywords_count_as_keywords(name: str, expected: bool) -> None:
    assert is_keyword(name) is expected


@pytest.mark.parametrize("name", ["_private", "__init__", "__x"])
def test_names_starting_with_an_underscore_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError, match="underscore"):
        validate_workflow_name(name)


@pytest.mark.parametrize("name", sorted(RESERVED_WORKFLOW_NAMES))
def test_method_names_of_the_namespace_are_rejected_with_the_reason(name: str) -> None:
    with pytest.raises(InvalidNameError, match=rf"workflows\.{name}\(\)"):
        validate_workflow_name(name)


def test_the_reserved_names_are_the_namespace_methods() -> None:
    assert {"list", "search", "get", "create", "delete", "invoke"} == RESERVED_WORKFLOW_NAMES


# -- artifacts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "report.json",
        "reports/2024.json",
        "a/b/c/d.txt",
        "with space.txt",
        "x-y_z.1",
        "_underscore",
        "9lives",
        "trailing.dot.",
        "A" * 255,
        "/".join(["seg"] * 60),
    ],
)
def test_safe_relative_artifact_names_are_accepted_and_returned(name: str) -> None:
    assert validate_artifact_name(name) == name


@pytest.mark.parametrize("name", [None, 3, b"bytes", ("a",)])
def test_an_artifact_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(InvalidNameError, match="non-empty string"):
        validate_artifact_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("../x", id="parent"),
        pytest.param("a/../b", id="inner-parent"),
        pytest.param("a/../../b", id="escape"),
        pytest.param("./x", id="dot-segment"),
        pytest.param("..", id="dotdot"),
        pytest.param("/etc/passwd", id="absolute"),
        pytest.param("a\\b", id="backslash"),
        pytest.param("C:foo", id="drive"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\nb", id="newline"),
        pytest.param("tab\there", id="tab"),
        pytest.param("del\x7f", id="del"),
        pytest.param(".hidden", id="hidden"),
        pytest.param("dir/.hidden", id="hidden-segment"),
        pytest.param("-dash", id="leading-dash"),
        pytest.param("a//b", id="empty-segment"),
        pytest.param("trailing/", id="trailing-slash"),
        pytest.param("A" * 256, id="too-long"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("star*", id="glob"),
        pytest.param("colon:name", id="colon"),
        pytest.param("ünï.txt", id="non-ascii"),
        pytest.param("$HOME", id="dollar"),
    ],
)
def test_unsafe_artifact_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_artifact_name(name)


def test_rejection_messages_say_what_is_wrong() -> None:
    with pytest.raises(InvalidNameError, match="escape"):
        validate_artifact_name("../x")
    with pytest.raises(InvalidNameError, match="relative"):
        validate_artifact_name("/etc/passwd")
    with pytest.raises(InvalidNameError, match="control"):
        validate_artifact_name("a\x00b")
    with pytest.raises(InvalidNameError, match="255"):
        validate_artifact_name("x" * 300)
    with pytest.raises(InvalidNameError, match=r"must not start with '\.'"):
        validate_artifact_name(".hidden")


def test_invalid_name_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_artifact_name("")
