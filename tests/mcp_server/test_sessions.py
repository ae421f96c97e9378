"""The session pool: lazy start, failed starts reported and retried, clean close."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from py_code_mode import Session
from py_code_mode.execution import InProcessExecutor
from py_code_mode.mcp_server.sessions import SessionPool, SessionStartError
from py_code_mode.storage.file import FileStorage


async def test_requests_without_a_connection_share_one_started_session(tmp_path: Path) -> None:
    made: list[Session] = []

    def factory() -> Session:
        made.append(Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()))
        return made[-1]

    pool = SessionPool(factory, per_connection=True)
    first, _ = await pool.get(object())
    second, _ = await pool.get(object())
    assert first is second
    assert len(made) == 1
    assert (await first.run("1 + 1")).value == 2
    await pool.aclose()
    assert first.closed


async def test_warming_starts_the_session_before_the_first_call(tmp_path: Path) -> None:
    pool = SessionPool(
        lambda: Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()),
        per_connection=False,
    )
    pool.warm(None)
    assert len(pool) == 1
    session, lock = await pool.get(None)
    async with lock:
        assert (await session.run("2 * 3")).value == 6
    await pool.aclose()


async def test_a_failed_start_is_reported_and_the_next_call_tries_again(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the library should be")
    attempts: list[Session] = []

    def factory() -> Session:
        attempts.append(Session(storage=FileStorage(blocker), executor=InProcessExecutor()))
        return attempts[-1]

    pool = SessionPool(factory, per_connection=False)
    for _ in range(2):
        with pytest.raises(SessionStartError, match="could not start"):
            await pool.get(None)
    assert len(attempts) == 2
    await pool.aclose()
    assert all(s.closed for s in attempts)


async def test_after_closing_no_new_session_is_made(tmp_path: Path) -> None:
    pool = SessionPool(
        lambda: Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()),
        per_connection=False,
    )
    await pool.aclose()
    pool.warm(None)
    assert len(pool) == 0
    with pytest.raises(SessionStartError, match="shutting down"):
        await asyncio.wait_for(pool.get(None), 5)


class _GatedExecutor(InProcessExecutor):
    """An executor whose start waits until the test opens the gate."""

    def __init__(self, gate: asyncio.Event) -> None:
        super().__init__()
        self._gate = gate

    async def start(self, host) -> None:  # type: ignore[no-untyped-def]
        await self._gate.wait()
        await super().start(host)


async def test_library_calls_get_the_session_while_its_executor_is_still_starting(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()
    pool = SessionPool(
        lambda: Session(storage=FileStorage(tmp_path), executor=_GatedExecutor(gate)),
        per_connection=False,
    )
    try:
        session = pool.library(None)
        await asyncio.wait_for(session.add_workflow("one", "def run():\n    return 1\n"), 5)
        assert [w["name"] for w in await session.list_workflows()] == ["one"]
        waiting = asyncio.create_task(pool.get(None))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        gate.set()
        started, lock = await asyncio.wait_for(waiting, 10)
        assert started is session
        async with lock:
            assert (await session.run("workflows.one()")).value == 1
    finally:
        gate.set()
        await pool.aclose()
