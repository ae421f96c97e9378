from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from py_code_mode import Session, SessionClosedError
from py_code_mode.integrations import SyncSession


def test_a_sync_session_keeps_variables_and_reaches_the_library(tmp_path: Path) -> None:
    with SyncSession(Session.inprocess(tmp_path)) as code_mode:
        assert code_mode.run("x = 20").is_ok
        assert code_mode.run("x * 2").value == 40
        assert code_mode.run_code("x + 1").startswith("value:\n21")
        code_mode.save_artifact("n.json", [1, 2])
        assert code_mode.load_artifact("n.json") == [1, 2]
        code_mode.add_workflow("inc", "def run(n: int) -> int:\n    return n + 1\n")
        assert [w["name"] for w in code_mode.list_workflows()] == ["inc"]
        assert code_mode.run("workflows.inc(n=1)").value == 2
        code_mode.reset()
        assert code_mode.run("x").error_type == "NameError"
    assert (tmp_path / "workflows" / "inc.py").is_file()


def test_it_can_be_called_from_plain_threads(tmp_path: Path) -> None:
    results: list[object] = []
    with SyncSession(Session.inprocess(tmp_path)) as code_mode:
        threads = [
            threading.Thread(target=lambda i=i: results.append(code_mode.run(f"{i} * 3").value))
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert sorted(results) == [0, 3, 6, 9]  # type: ignore[type-var]


async def test_it_works_when_called_from_inside_a_running_event_loop(tmp_path: Path) -> None:
    # A sync tool of an async framework runs on the loop's thread: this must not
    # deadlock or raise "event loop is already running".
    code_mode = SyncSession(Session.inprocess(tmp_path))
    try:
        assert code_mode.run("1 + 1").value == 2
        assert asyncio.get_running_loop().is_running()
    finally:
        code_mode.close()


def test_calling_it_from_its_own_loop_thread_is_refused_not_deadlocked(tmp_path: Path) -> None:
    code_mode = SyncSession(Session.inprocess(tmp_path))
    try:

        async def inner() -> str:
            try:
                code_mode.run("1")
            except RuntimeError as exc:
                return str(exc)
            return "no error"

        message = asyncio.run_coroutine_threadsafe(inner(), code_mode._loop).result(30)
        assert "its own event-loop thread" in message
    finally:
        code_mode.close()


def test_close_is_idempotent_and_later_calls_say_it_is_closed(tmp_path: Path) -> None:
    code_mode = SyncSession(Session.inprocess(tmp_path))
    code_mode.run("1")
    code_mode.close()
    code_mode.close()
    assert not code_mode._thread.is_alive()
    with pytest.raises(SessionClosedError, match="closed"):
        code_mode.run("1")


def test_a_call_longer_than_call_timeout_raises_timeout_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    with SyncSession(Session.inprocess(tmp_path), call_timeout=0.5) as code_mode:
        with pytest.raises(TimeoutError):
            code_mode.run("import asyncio\nawait asyncio.sleep(3)")
        # The caller stopped waiting; the session finishes that run, then serves again.
        deadline = time.monotonic() + 30
        while True:
            try:
                assert code_mode.run("2 + 2").value == 4
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "the session never became free again"
