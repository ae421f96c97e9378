"""Behaviour every executor must have; runs once per executor kind.

Agent code sees the same namespaces, values, errors and shapes whichever executor
runs it, so these tests only go through ``Session``.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable

import pytest

from py_code_mode import Session


async def run_ok(session: Session, code: str) -> object:
    result = await session.run(textwrap.dedent(code))
    assert result.is_ok, result.error
    return result.value


# -- REPL semantics ----------------------------------------------------------------------
async def test_trailing_expression_is_the_value(session: Session) -> None:
    assert await run_ok(session, "1 + 1") == 2


async def test_code_ending_in_a_statement_has_no_value(session: Session) -> None:
    assert await run_ok(session, "x = 1") is None


async def test_variables_functions_classes_and_imports_persist_between_runs(
    session: Session,
) -> None:
    await run_ok(
        session,
        """
        import json
        counter = 41
        def bump(n):
            return n + 1
        class Box:
            def __init__(self, v):
                self.v = v
        """,
    )
    assert await run_ok(session, "json.dumps(Box(bump(counter)).v)") == "42"


async def test_json_values_come_back_as_data_and_others_as_repr(session: Session) -> None:
    assert await run_ok(session, "{'a': [1, 2.5, None, True, 'x']}") == {
        "a": [1, 2.5, None, True, "x"]
    }
    assert await run_ok(session, "(1, 2)") == "(1, 2)"
    assert await run_ok(session, "{1, 2}") == "{1, 2}"
    assert await run_ok(session, "b'\\x00'") == "b'\\x00'"


async def test_stdout_and_stderr_hold_this_runs_output_separately(session: Session) -> None:
    first = await session.run("import sys\nprint('one')\nprint('err', file=sys.stderr)")
    assert first.stdout == "one\n"
    assert first.stderr == "err\n"
    second = await session.run("print('two')")
    assert second.stdout == "two\n"
    assert second.stderr == ""


async def test_output_of_a_thread_the_run_started_is_kept_for_the_next_run(
    session: Session,
) -> None:
    started = await session.run(
        "import threading, time\n"
        "def later():\n"
        "    time.sleep(0.05)\n"
        "    print('late line')\n"
        "worker = threading.Thread(target=later)\n"
        "worker.start()"
    )
    assert started.is_ok, started.error
    await asyncio.sleep(1.0)  # the thread prints while no run is active
    following = await session.run("worker.join(10)\nprint('next run')")
    assert following.stdout == (
        "[output printed by threads of the previous run after it ended]\nlate line\nnext run\n"
    )


async def test_a_thread_printing_during_the_run_lands_in_that_run(session: Session) -> None:
    result = await session.run(
        "import threading\n"
        "t = threading.Thread(target=lambda: print('from thread'))\n"
        "t.start(); t.join(10)\n"
        "print('after')"
    )
    assert result.stdout == "from thread\nafter\n"


async def test_sys_stdout_buffer_takes_bytes_like_python(session: Session) -> None:
    result = await session.run(
        "import sys\nsys.stdout.buffer.write('caf\u00e9\\n'.encode())\nsys.stdout.flush()"
    )
    assert result.is_ok, result.error
    assert result.stdout == "caf\u00e9\n"


async def test_an_image_as_last_value_is_saved_as_an_artifact_and_named(
    session: Session,
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
    result = await session.run(repr(png))
    assert result.is_ok, result.error
    [name] = result.metadata["images"]
    assert name in result.value
    assert await session.load_artifact(name) == png


async def test_top_level_await_works(session: Session) -> None:
    value = await run_ok(
        session,
        """
        import asyncio
        async def double(n):
            await asyncio.sleep(0)
            return n * 2
        await double(21)
        """,
    )
    assert value == 42


async def test_an_exception_is_reported_with_a_traceback_of_the_agents_code(
    session: Session,
) -> None:
    result = await session.run("def f():\n    raise ValueError('bad value')\n\nf()")
    assert not result.is_ok
    assert result.error_type == "ValueError"
    assert result.error is not None
    assert "bad value" in result.error
    assert "line 2, in f" in result.error
    assert "raise ValueError('bad value')" in result.error
    assert "py_code_mode" not in result.error


async def test_a_syntax_error_is_reported_and_the_session_keeps_working(
    session: Session,
) -> None:
    result = await session.run("def broken(:")
    assert result.error_type == "SyntaxError"
    assert await run_ok(session, "'still alive'") == "still alive"


async def test_sys_exit_is_an_error_result_not_the_end_of_the_session(session: Session) -> None:
    result = await session.run("import sys\nsys.exit(3)")
    assert result.error_type == "SystemExit"
    assert await run_ok(session, "2 + 2") == 4


async def test_reset_clears_variables_but_keeps_storage(session: Session) -> None:
    await run_ok(session, "x = 1\nartifacts.save('kept.txt', 'still here')")
    await session.reset()
    result = await session.run("x")
    assert result.error_type == "NameError"
    assert await run_ok(session, "artifacts.load('kept.txt')") == "still here"


async def test_a_run_past_its_timeout_is_stopped_and_the_next_run_works(
    session: Session,
) -> None:
    await run_ok(session, "kept = 'yes'")
    result = await session.run("while True:\n    pass", timeout=1.0)
    assert result.error_type == "TimeoutError"
    assert result.error is not None
    assert "timeout" in result.error
    after = await session.run("kept if 'kept' in dir() else 'lost'")
    assert after.is_ok
    assert after.value == ("lost" if result.variables_lost else "yes")


async def test_huge_output_is_truncated_and_the_session_survives(session: Session) -> None:
    result = await session.run("print('x' * 5_000_000)")
    assert result.is_ok
    assert "truncated" in result.stdout
    assert len(result.stdout) < 2_000_000
    assert await run_ok(session, "1") == 1


async def test_execution_time_is_measured(session: Session) -> None:
    result = await session.run("import time\ntime.sleep(0.05)")
    assert result.execution_time_ms >= 50


# -- tools -----------------------------------------------------------------------------
async def test_tools_list_describes_tools_and_their_callables(session: Session) -> None:
    tools = await run_ok(session, "tools.list()")
    assert isinstance(tools, list)
    by_name = {t["name"]: t for t in tools}
    assert set(by_name) == {"fail", "greet"}
    assert by_name["greet"]["description"].startswith("Print words")
    recipe_names = {c["name"] for c in by_name["greet"]["callables"]}
    assert "hello" in recipe_names


async def test_a_tool_recipe_returns_the_commands_stdout(session: Session) -> None:
    assert await run_ok(session, "tools.greet.hello()") == "world"
    assert await run_ok(session, "tools.greet.hello(text='agent')") == "agent"


async def test_a_tool_can_be_called_directly_with_its_schema(session: Session) -> None:
    assert await run_ok(session, "tools.greet(text='direct')") == "direct\n"


async def test_a_failing_tool_raises_a_tool_error_carrying_stderr(session: Session) -> None:
    value = await run_ok(
        session,
        """
        try:
            tools.fail()
        except Exception as exc:
            caught = [type(exc).__name__, str(exc), exc.stderr]
        caught
        """,
    )
    assert isinstance(value, list)
    assert value[0] == "ToolError"
    assert "something broke" in value[2]


async def test_an_unknown_tool_is_an_attribute_error_listing_the_available_ones(
    session: Session,
) -> None:
    result = await session.run("tools.nope")
    assert result.error_type == "ToolNotFoundError"
    assert result.error is not None
    assert "greet" in result.error
    assert await run_ok(session, "hasattr(tools, 'nope')") is False


async def test_tools_search_ranks_the_matching_tool_first(session: Session) -> None:
    hits = await run_ok(session, "tools.search('print words echo')")
    assert isinstance(hits, list)
    assert hits[0]["name"] == "greet"
    assert "score" in hits[0]


# -- workflows -------------------------------------------------------------------------
DOUBLE = '''
def run(n: int) -> int:
    """Double a number."""
    return n * 2
'''


async def test_a_created_workflow_can_be_invoked_in_three_ways(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    assert await run_ok(session, "workflows.double(n=21)") == 42
    assert await run_ok(session, "workflows.invoke('double', n=5)") == 10
    assert await run_ok(session, "workflows.invoke('double', 4)") == 8


async def test_workflow_listing_has_description_and_parameters(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    listed = await run_ok(session, "workflows.list()")
    assert isinstance(listed, list)
    assert listed[0]["name"] == "double"
    assert listed[0]["description"] == "Double a number."
    assert listed[0]["parameters"][0]["name"] == "n"
    assert listed[0]["parameters"][0]["type"] == "int"
    assert "source" not in listed[0]
    assert await session.list_workflows() == listed


async def test_an_async_workflow_can_call_tools_and_other_workflows_synchronously(
    session: Session,
) -> None:
    source = textwrap.dedent(
        """
        import asyncio

        async def run(name: str) -> str:
            await asyncio.sleep(0)
            greeting = tools.greet.hello(text=name)
            return greeting + '!' * workflows.double(n=1)
        """
    )
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    await run_ok(session, f"workflows.create('shout', {source!r})")
    assert await run_ok(session, "workflows.shout(name='bob')") == "bob!!"
    assert (
        await run_ok(session, "import asyncio\nawait asyncio.sleep(0)\nworkflows.shout(name='al')")
        == "al!!"
    )


async def test_an_invalid_workflow_is_refused_and_nothing_is_stored(session: Session) -> None:
    syntax = await session.run("workflows.create('broken', 'def run(:')")
    assert syntax.error_type == "WorkflowError"
    assert syntax.error is not None
    assert "syntax error" in syntax.error
    no_run = await session.run("workflows.create('norun', 'x = 1')")
    assert no_run.error_type == "WorkflowError"
    bad_name = await session.run(f"workflows.create('list', {DOUBLE!r})")
    assert bad_name.error_type == "InvalidNameError"
    assert await run_ok(session, "workflows.list()") == []


async def test_an_unknown_workflow_lists_the_available_ones(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    result = await session.run("workflows.triple(n=1)")
    assert result.error_type == "WorkflowNotFoundError"
    assert result.error is not None
    assert "double" in result.error


async def test_a_workflow_error_shows_the_workflow_line(session: Session) -> None:
    await run_ok(session, "workflows.create('oops', 'def run():\\n    return 1 / 0\\n')")
    result = await session.run("workflows.oops()")
    assert result.error_type == "ZeroDivisionError"
    assert result.error is not None
    assert "<workflow oops>" in result.error
    assert "return 1 / 0" in result.error


async def test_a_deleted_workflow_is_gone(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    assert await run_ok(session, "workflows.delete('double')") is True
    assert await run_ok(session, "workflows.delete('double')") is False
    assert await run_ok(session, "workflows.list()") == []


async def test_an_updated_workflow_runs_its_new_source(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    assert await run_ok(session, "workflows.double(n=1)") == 2
    await run_ok(session, "workflows.create('double', 'def run(n):\\n    return n * 3\\n')")
    assert await run_ok(session, "workflows.double(n=1)") == 3


async def test_workflow_search_finds_by_description(session: Session) -> None:
    await run_ok(session, f"workflows.create('double', {DOUBLE!r})")
    hits = await run_ok(session, "workflows.search('double a number')")
    assert isinstance(hits, list)
    assert hits[0]["name"] == "double"


# -- artifacts -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "literal",
    [
        "'text'",
        "b'\\x00\\xffbinary'",
        "{'a': [1, 2, {'b': None}]}",
        "[1, 'two', 3.5]",
        "7",
        "None",
        "True",
    ],
)
async def test_artifacts_keep_their_type_across_a_round_trip(
    session: Session, literal: str
) -> None:
    value = await run_ok(
        session,
        f"""
        original = {literal}
        artifacts.save('thing', original, description='a thing')
        loaded = artifacts.load('thing')
        (type(loaded) is type(original), loaded == original)
        """,
    )
    assert value == "(True, True)"


async def test_artifacts_can_be_listed_checked_and_deleted(session: Session) -> None:
    await run_ok(
        session, "artifacts.save('report.json', {'ok': 1}, description='daily', metadata={'v': 2})"
    )
    listed = await run_ok(session, "artifacts.list()")
    assert isinstance(listed, list)
    assert listed[0]["name"] == "report.json"
    assert listed[0]["description"] == "daily"
    assert listed[0]["metadata"] == {"v": 2}
    assert await run_ok(session, "artifacts.exists('report.json')") is True
    assert await run_ok(session, "artifacts.delete('report.json')") is True
    assert await run_ok(session, "artifacts.exists('report.json')") is False
    assert await session.list_artifacts() == []


async def test_loading_a_missing_artifact_raises_a_key_error(session: Session) -> None:
    value = await run_ok(
        session,
        """
        try:
            artifacts.load('missing')
        except KeyError as exc:
            caught = type(exc).__name__
        caught
        """,
    )
    assert value == "ArtifactNotFoundError"


async def test_artifact_names_cannot_escape_the_store(session: Session) -> None:
    for name in ("../escape", "/etc/passwd", "a/../../b"):
        result = await session.run(f"artifacts.save({name!r}, 'x')")
        assert result.error_type == "InvalidNameError", name


async def test_facade_and_namespace_see_the_same_artifacts(session: Session) -> None:
    await session.save_artifact("from_host.bin", b"\x00\x01")
    assert await run_ok(session, "artifacts.load('from_host.bin') == b'\\x00\\x01'") is True
    await run_ok(session, "artifacts.save('from_agent', {'k': 'v'})")
    assert await session.load_artifact("from_agent") == {"k": "v"}


# -- deps ------------------------------------------------------------------------------
async def test_invalid_dependency_specs_are_refused(session: Session) -> None:
    for spec in ("--index-url=http://evil", "pkg; rm -rf /", "https://x/y.whl", "../local"):
        result = await session.run(f"deps.add({spec!r})")
        assert result.error_type == "DependencyError", spec
    assert await run_ok(session, "deps.list()") == []


async def test_runtime_deps_can_be_disabled(make_session: Callable[..., Session]) -> None:
    async with make_session(allow_runtime_deps=False) as session:
        result = await session.run("deps.add('six')")
        assert result.error_type == "DependencyError"
        assert result.error is not None
        assert "allow_runtime_deps" in result.error
        assert await run_ok(session, "deps.list()") == []


# -- lifecycle -------------------------------------------------------------------------
async def test_run_after_close_is_a_failed_result(make_session: Callable[..., Session]) -> None:
    session = make_session()
    await session.start()
    await session.close()
    await session.close()
    result = await session.run("1")
    assert result.error_type == "SessionClosedError"
