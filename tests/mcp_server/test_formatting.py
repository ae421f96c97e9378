"""What a model reads: bounded, clearly separated text and matching structured data."""

from __future__ import annotations

import base64

from py_code_mode.mcp_server.formatting import (
    artifact_payload,
    format_deps,
    format_run_result,
    format_tools,
    format_workflows,
    truncate,
)
from py_code_mode.result import ExecutionResult


def test_short_text_is_left_alone() -> None:
    assert truncate("abc", 10) == ("abc", False)


def test_long_text_keeps_both_ends_and_says_how_much_was_cut() -> None:
    text = "A" * 500 + "B" * 500
    cut, was_cut = truncate(text, 300)
    assert was_cut
    assert cut.startswith("A" * 200)
    assert cut.endswith("B" * 100)
    assert "[truncated 700 characters]" in cut


def test_a_successful_run_shows_value_and_stdout_separately() -> None:
    result = ExecutionResult(value={"a": 1}, stdout="hello\n", execution_time_ms=3.2)
    text, data = format_run_result(result)
    assert text.startswith('value:\n{"a": 1}\n\nstdout:\nhello')
    assert "[ok in 3 ms]" in text
    assert data.is_ok
    assert data.value == {"a": 1}
    assert data.truncated is False


def test_a_string_value_is_shown_without_quotes() -> None:
    text, _ = format_run_result(ExecutionResult(value="<Frame 3x2>"))
    assert "value:\n<Frame 3x2>" in text


def test_a_failed_run_names_the_error_type_and_keeps_partial_output() -> None:
    result = ExecutionResult.failure("Traceback...\nKeyError: 'x'", "KeyError", stdout="partial\n")
    text, data = format_run_result(result)
    assert "stdout:\npartial" in text
    assert "error (KeyError):\nTraceback..." in text
    assert "[failed in" in text
    assert data.is_ok is False
    assert data.error_type == "KeyError"


def test_a_run_without_value_or_output_still_says_it_worked() -> None:
    text, _ = format_run_result(ExecutionResult())
    assert text.startswith("ok (no value, no output)")


def test_lost_variables_are_pointed_out() -> None:
    result = ExecutionResult.failure("killed", "TimeoutError", variables_lost=True)
    text, data = format_run_result(result)
    assert "variables were lost" in text
    assert data.variables_lost


def test_a_huge_value_is_cut_once_in_text_and_left_out_of_structured_content() -> None:
    text, data = format_run_result(ExecutionResult(value=list(range(100_000))), limit=1_000)
    assert data.truncated
    assert data.value is None
    assert "[truncated" in text
    assert len(text) < 2_000


def test_long_stdout_appears_once_and_names_the_artifact_holding_all_of_it() -> None:
    result = ExecutionResult(stdout="x" * 50_000, stderr="warn\n")
    text, data = format_run_result(result, output_artifact="run-output/a.txt", stdout_limit=1_000)
    assert data.stdout is None
    assert data.stderr == "warn\n"
    assert data.output_artifact == "run-output/a.txt"
    assert "artifacts.load('run-output/a.txt')" in text
    assert "stderr:\nwarn" in text
    assert len(text) < 2_000


def test_workflow_listing_shows_call_signatures() -> None:
    workflows = [
        {
            "name": "fetch_json",
            "description": "Fetch a URL and parse JSON.\nMore details.",
            "parameters": [
                {"name": "url", "type": "str", "required": True, "kind": "positional_or_keyword"},
                {"name": "timeout", "type": "float", "required": False, "default": 10.0},
            ],
        }
    ]
    text = format_workflows(workflows)
    assert "- fetch_json(url: str, timeout: float = 10.0) - Fetch a URL and parse JSON." in text
    assert "More details" not in text


def test_an_empty_search_suggests_writing_and_saving_code() -> None:
    text = format_workflows([], query="parse pdf")
    assert "No workflow matches 'parse pdf'" in text
    assert "workflows.create" in text


def test_tool_listing_shows_how_to_call_each_callable() -> None:
    tools = [
        {
            "name": "curl",
            "description": "Transfer data",
            "callables": [
                {
                    "name": "get",
                    "description": "GET a URL",
                    "parameters": {"url": {"type": "string", "required": True}},
                }
            ],
        }
    ]
    assert "    tools.curl.get(url: string) - GET a URL" in format_tools(tools)


def test_artifact_bytes_are_base64_and_json_stays_data() -> None:
    _, blob = artifact_payload("b.bin", b"\x00\x01")
    assert blob.encoding == "base64"
    assert base64.b64decode(blob.data) == b"\x00\x01"
    _, data = artifact_payload("d.json", {"k": [1]})
    assert data.encoding == "json"
    assert data.data == {"k": [1]}
    text, big = artifact_payload("big.txt", "z" * 50_000, limit=100)
    assert big.truncated
    assert "[truncated" in text


def test_deps_listing_says_whether_installing_is_allowed() -> None:
    assert "add_dep" in format_deps([], allow_runtime_deps=True)
    assert "does not allow" in format_deps(["pandas"], allow_runtime_deps=False)
