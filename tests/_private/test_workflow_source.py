"""Static analysis of workflow source: never runs it, always explains a refusal."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from py_code_mode._private.workflow_source import MAX_WORKFLOW_SOURCE, analyze_workflow
from py_code_mode.errors import WorkflowError

SIMPLE = "def run():\n    return 1\n"


def params(source: str) -> list[tuple[str, str, bool, Any, str]]:
    record = analyze_workflow("flow", source)
    return [(p.name, p.type, p.required, p.default, p.kind) for p in record.parameters]


# -- records -----------------------------------------------------------------------------


def test_a_simple_workflow_gives_a_complete_record() -> None:
    before = time.time()
    record = analyze_workflow("flow", SIMPLE)
    after = time.time()
    assert record.name == "flow"
    assert record.source == SIMPLE
    assert record.description == ""
    assert record.parameters == ()
    assert record.is_async is False
    assert record.metadata == {}
    assert before <= record.created_at == record.updated_at <= after


def test_async_run_is_detected() -> None:
    assert analyze_workflow("flow", "async def run():\n    return 1\n").is_async is True


def test_given_timestamps_and_metadata_are_kept() -> None:
    meta = {"author": "agent"}
    record = analyze_workflow("flow", SIMPLE, metadata=meta, created_at=1.0, updated_at=2.0)
    assert (record.created_at, record.updated_at) == (1.0, 2.0)
    assert record.metadata == meta
    meta["author"] = "changed later"
    assert record.metadata == {"author": "agent"}


def test_records_always_dump_to_json() -> None:
    source = "def run(a=b'x', b=(1, 2), c={1, 2}, d={1: 2}, e=1e999, f=[b'y'], g=1j):\n    pass\n"
    record = analyze_workflow("flow", source)
    json.dumps(record.to_dict(), allow_nan=False)


# -- descriptions ----------------------------------------------------------------------


def test_an_explicit_description_wins_and_is_stripped() -> None:
    source = 'def run():\n    """Docstring."""\n'
    assert analyze_workflow("flow", source, "  Given words \n").description == "Given words"


def test_the_first_paragraph_of_the_run_docstring_is_the_description() -> None:
    source = '''
def run():
    """Fetch a URL
    and parse it.

    Details that stay out of the description.
    """
'''
    assert analyze_workflow("flow", source).description == "Fetch a URL and parse it."


def test_the_module_docstring_is_the_fallback_description() -> None:
    source = '"""Module summary.\n\nMore."""\n\ndef run():\n    pass\n'
    assert analyze_workflow("flow", source).description == "Module summary."


def test_a_blank_explicit_description_falls_back_to_the_docstring() -> None:
    source = 'def run():\n    """From the docstring."""\n'
    assert analyze_workflow("flow", source, "   ").description == "From the docstring."


# -- parameters ------------------------------------------------------------------------


def test_parameters_come_from_the_signature_in_order() -> None:
    source = (
        "def run(a, /, b: int, c: str = 'x', *args: int, d: float, e: bool = True, **kw):\n"
        "    pass\n"
    )
    assert params(source) == [
        ("a", "Any", True, None, "positional_or_keyword"),
        ("b", "int", True, None, "positional_or_keyword"),
        ("c", "str", False, "x", "positional_or_keyword"),
        ("args", "int", False, None, "var_positional"),
        ("d", "float", True, None, "keyword_only"),
        ("e", "bool", False, True, "keyword_only"),
        ("kw", "Any", False, None, "var_keyword"),
    ]


def test_annotations_are_kept_as_source_text() -> None:
    source = "def run(x: list[dict[str, int]] | None = None, y: 'Forward' = 1):\n    pass\n"
    assert [(n, t) for n, t, *_ in params(source)] == [
        ("x", "list[dict[str, int]] | None"),
        ("y", "'Forward'"),
    ]


def test_json_literal_defaults_are_kept_as_values() -> None:
    source = "def run(a=None, b=-3, c=2.5, d='s', e=[1, 'x', None], f={'k': [True]}):\n    pass\n"
    assert [d for *_, d, _ in params(source)] == [None, -3, 2.5, "s", [1, "x", None], {"k": [True]}]


@pytest.mark.parametrize(
    ("default", "text"),
    [
        ("b'raw'", "b'raw'"),
        ("(1, 2)", "(1, 2)"),
        ("{1, 2}", "{1, 2}"),
        ("{1: 'a'}", "{1: 'a'}"),
        ("[b'x']", "[b'x']"),
        ("1e999", "1e309"),
        ("1j", "1j"),
        ("os.getcwd()", "os.getcwd()"),
        ("A + 1", "A + 1"),
    ],
)
def test_other_defaults_are_shown_as_source_text_not_evaluated(default: str, text: str) -> None:
    ((*_, value, _),) = params(f"def run(x={default}):\n    pass\n")
    assert value == text


def test_a_huge_int_default_does_not_break_analysis() -> None:
    source = "def run(x=0x" + "f" * 4000 + ", *, y: 0x" + "f" * 4000 + " = 1):\n    pass\n"
    record = analyze_workflow("flow", source)
    json.dumps(record.to_dict())
    assert record.parameters[0].required is False


def test_the_last_module_level_run_wins() -> None:
    source = "def run(a):\n    pass\n\nasync def run(b):\n    pass\n"
    record = analyze_workflow("flow", source)
    assert [p.name for p in record.parameters] == ["b"]
    assert record.is_async is True


# -- never executes --------------------------------------------------------------------


def test_the_source_is_parsed_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').write('x')\nraise SystemExit(1)\n\ndef run():\n    pass\n"
    analyze_workflow("flow", source)
    assert not marker.exists()


# -- refusals --------------------------------------------------------------------------


def test_source_longer_than_the_limit_is_refused() -> None:
    source = SIMPLE + "#" * MAX_WORKFLOW_SOURCE
    with pytest.raises(WorkflowError, match="longer"):
        analyze_workflow("flow", source)


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(WorkflowError, match=r"syntax error at line 3") as caught:
        analyze_workflow("flow", "x = 1\n\ndef run(:\n    pass\n")
    assert caught.value.__cause__ is None


def test_nul_bytes_are_a_workflow_error_without_a_bogus_line() -> None:
    with pytest.raises(WorkflowError) as caught:
        analyze_workflow("flow", "def run():\n    pass\x00\n")
    assert "None" not in str(caught.value)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("x = " + "-" * 200_000 + "1\ndef run():\n    pass\n", id="deep-unary"),
        pytest.param("x = " + "+".join(["1"] * 30_000) + "\ndef run(): pass\n", id="long-sum"),
        pytest.param("def run(x=" + ".".join(["a"] * 2000) + "):\n    pass\n", id="deep-default"),
        pytest.param(
            "def run(x: " + ".".join(["a"] * 2000) + "):\n    pass\n", id="deep-annotation"
        ),
    ],
)
def test_absurdly_nested_code_is_a_workflow_error(source: str) -> None:
    with pytest.raises(WorkflowError, match="nested"):
        analyze_workflow("flow", source)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("def main():\n    pass\n", id="other-function"),
        pytest.param("run = lambda: 1\n", id="lambda"),
        pytest.param("class Flow:\n    def run(self):\n        pass\n", id="method"),
        pytest.param("if True:\n    def run():\n        pass\n", id="nested"),
        pytest.param("", id="empty"),
    ],
)
def test_a_source_without_a_module_level_run_function_is_refused(source: str) -> None:
    with pytest.raises(WorkflowError, match=r"def run\(url: str\)"):
        analyze_workflow("flow", source)
