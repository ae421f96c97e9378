from __future__ import annotations

import json

from py_code_mode import ExecutionResult
from py_code_mode._private.safe_text import safe_data, safe_text


def test_lone_surrogates_become_their_escapes_and_pairs_of_real_characters_stay() -> None:
    assert safe_text("a\udcffb") == "a\\udcffb"
    assert safe_text("emoji \U0001f600 ok") == "emoji \U0001f600 ok"


def test_clean_data_comes_back_as_the_same_object() -> None:
    data = {"a": [1, "b", ("c",)], "d": None}
    assert safe_data(data) is data


def test_keys_values_and_nested_items_are_all_escaped() -> None:
    cleaned = safe_data({"k\udcff": ["v\ud800", ("t\udfff",)], "n": 1})
    assert cleaned == {"k\\udcff": ["v\\ud800", ("t\\udfff",)], "n": 1}
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")


def test_an_execution_result_is_always_utf8_encodable() -> None:
    result = ExecutionResult(
        value={"x\udcff": "y"}, stdout="a\udcffb", error="E\ud800", metadata={"m": "\udcff"}
    )
    json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
    assert result.stdout == "a\\udcffb"
