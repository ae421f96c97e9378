from __future__ import annotations

import json
from typing import Any

import pytest

from py_code_mode.integrations import DEFAULT_TOOLS, TOOL_NAMES, run_code_spec, tool_specs


def _walk(schema: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(schema, dict):
        found.append(schema)
        for value in schema.values():
            found.extend(_walk(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_walk(value))
    return found


def test_every_spec_is_flat_and_valid_in_openai_strict_mode() -> None:
    for spec in tool_specs(TOOL_NAMES):
        assert spec["type"] == "function"
        function = spec["function"]
        assert function["strict"] is True
        params = function["parameters"]
        assert params["type"] == "object"
        assert params["additionalProperties"] is False
        assert sorted(params["required"]) == sorted(params["properties"])
        for prop in params["properties"].values():
            assert prop["type"] == "string"
        text = json.dumps(params)
        for keyword in ("anyOf", "oneOf", "allOf", "$ref", "$defs", "default"):
            assert keyword not in text, (function["name"], keyword)
        assert all(len(node) < 10 for node in _walk(params))


def test_run_code_spec_takes_only_code() -> None:
    spec = run_code_spec()
    assert spec["function"]["name"] == "run_code"
    assert spec["function"]["parameters"]["properties"] == {
        "code": {"type": "string", "description": "Python source to run"}
    }
    assert "workflows.create" in spec["function"]["description"]
    spec["function"]["name"] = "changed"
    assert run_code_spec()["function"]["name"] == "run_code"


def test_default_tools_are_a_lean_subset_and_strict_can_be_dropped() -> None:
    assert set(DEFAULT_TOOLS) <= set(TOOL_NAMES)
    assert [s["function"]["name"] for s in tool_specs()] == list(DEFAULT_TOOLS)
    assert "strict" not in tool_specs(["list_workflows"], strict=False)[0]["function"]


def test_an_unknown_tool_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown tool 'rm_rf'.*run_code"):
        tool_specs(["run_code", "rm_rf"])
