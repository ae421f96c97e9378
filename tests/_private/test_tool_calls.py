"""Argument checks and messages shared by the CLI, HTTP and MCP tool adapters."""

from __future__ import annotations

import math

import pytest

from py_code_mode._private.tool_calls import (
    reject_missing,
    reject_unknown,
    require_json,
    show,
)
from py_code_mode.errors import ToolError


def test_show_names_the_type_and_shortens_long_values() -> None:
    assert show(3) == "int 3"
    shown = show("x" * 100)
    assert shown.startswith("str 'xxx")
    assert shown.endswith("...")
    assert len(shown) == len("str ") + 60


def test_unknown_arguments_are_named_next_to_the_accepted_ones() -> None:
    reject_unknown("tool 't'", ["a"], ["a", "b"], tool="t")
    expected = r"tool 't': unknown argument\(s\) 'z'; accepted: a, b"
    with pytest.raises(ToolError, match=expected) as info:
        reject_unknown("tool 't'", ["a", "z"], ["a", "b"], tool="t")
    assert info.value.tool == "t"
    with pytest.raises(ToolError, match="accepted: none"):
        reject_unknown("tool 't'", ["z"], [], tool="t")


def test_missing_arguments_are_listed_with_the_parameters_when_given() -> None:
    reject_missing("tool 't'", [], tool="t")
    with pytest.raises(ToolError, match=r"missing required argument\(s\) 'a', 'b'$"):
        reject_missing("tool 't'", ["a", "b"], tool="t")
    with pytest.raises(ToolError, match=r"'a'; parameters: a, c$"):
        reject_missing("tool 't'", ["a"], tool="t", parameters=["a", "c"])


@pytest.mark.parametrize(
    "value", [{"x": math.nan}, {"x": -math.inf}, {"x": object()}, {"x": {1}}, {"x": ["a\ud800"]}]
)
def test_values_that_are_not_json_data_are_refused(value: object) -> None:
    with pytest.raises(ToolError, match=r"tool 't': arguments must be JSON data \(dicts"):
        require_json("tool 't'", value, "arguments", tool="t")


def test_json_data_passes() -> None:
    require_json("tool 't'", {"a": [1, 2.5, None, True, "s", {"b": []}]}, "arguments", tool="t")
