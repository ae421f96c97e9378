"""Nothing a container session uses outlives it: containers, host fds and threads.

Every way a session ends is checked against the containers it made (by id, never by
global counts: other engineers run container tests on this engine at the same time):
closed normally or twice, closed mid-run, after a timeout, a reset or a worker killed
from outside, a start that failed, a session dropped without ``close()`` and a host
that exits without closing. A host killed outright is covered by
``test_executor.py`` (its container ends, strays are reaped).
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode.execution import ContainerConfig, ContainerExecutor
from py_code_mode.execution.container import engine
from py_code_mode.execution.container.reaper import LABEL_OWNER_PID, LABEL_POOL

from .._container_support import TEST_IMAGE, TEST_RUNTIME, require_engine

WAIT = 20.0


@pytest.fixture(autouse=True)
def _engine() -> None:
    require_engine()


def exists(container_id: str) -> bool:
    import docker

    client = docker.from_env(timeout=10)
    try:
        client.api.inspect_container(container_id)
    except docker.errors.NotFound:
        return False
    finally:
        client.close()
    return True


def wait_for(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def left(container_ids: Sequence[str | None]) -> list[str]:
    """The containers still there after a bounded wait for their removal."""
    ids = [c for c in container_ids if c]
    wait_for(lambda: not any(exists(c) for c in ids))
    return [c[:12] for c in ids if exists(c)]


def container_session(tmp_path: Path, **config: Any) -> Session:
    settings: dict[str, Any] = {"image": TEST_IMAGE, "runtime": TEST_RUNTIME, **config}
    executor = ContainerExecutor(ContainerConfig(**settings))
    return Session(storage=FileStorage(tmp_path / "data"), executor=executor)


def container_of(session: Session) -> str:
    executor = session.executor
    assert isinstance(executor, ContainerExecutor)
    container_id = executor.container_id
    assert container_id is not None
    return container_id


def session_containers_of(pid: int) -> set[str]:
    """Non-pool containers labelled as started by process ``pid``."""
    import docker

    client = docker.from_env(timeout=10)
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_OWNER_PID}={pid}"})
    finally:
        client.close()
    return {c["Id"] for c in found if LABEL_POOL not in (c.get("Labels") or {})}


async def test_a_closed_session_and_a_second_close_leave_no_container(tmp_path: Path) -> None:
    session = container_session(tmp_path)
    await session.start()
    made = [container_of(session)]
    assert (await session.run("1 + 1")).value == 2
    await session.close()
    await session.close()
    assert left(made) == []


async def test_closing_during_a_run_ends_it_and_removes_the_container(tmp_path: Path) -> None:
    session = container_session(tmp_path)
    await session.start()
    made = [container_of(session)]
    run = asyncio.create_task(session.run("import time\ntime.sleep(60)"))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(session.close(), WAIT)
    result = await asyncio.wait_for(run, WAIT)
    assert result.error is not None
    assert left(made) == []


async def test_a_timed_out_run_with_threads_and_children_gets_its_container_removed(
    tmp_path: Path,
) -> None:
    code = (
        "import subprocess, threading, time\n"
        "threading.Thread(target=time.sleep, args=(300,)).start()\n"
        "children = [subprocess.Popen(['sleep', '300']) for _ in range(2)]\n"
        "time.sleep(300)\n"
    )
    async with container_session(tmp_path, interrupt_grace=1.0) as session:
        first = container_of(session)
        result = await session.run(code, timeout=3)
        assert result.error_type == "TimeoutError"
        assert await asyncio.to_thread(left, [first]) == []
        assert (await session.run("1 + 1")).value == 2
        second = container_of(session)
    assert left([first, second]) == []


async def test_a_reset_and_close_leave_no_container(tmp_path: Path) -> None:
    async with container_session(tmp_path) as session:
        made = [container_of(session)]
        await session.reset()
        made.append(container_of(session))
    assert left(made) == []


async def test_a_worker_killed_from_outside_is_replaced_and_both_containers_end(
    tmp_path: Path,
) -> None:
    import docker

    async with container_session(tmp_path) as session:
        first = container_of(session)
        client = docker.from_env(timeout=10)
        try:
            pid = client.api.inspect_container(first)["State"]["Pid"]
        finally:
            client.close()
        os.kill(pid, signal.SIGKILL)
        assert await asyncio.to_thread(left, [first]) == []
        await session.run("1")  # may report the death, or run in the fresh container
        assert (await session.run("1 + 1")).value == 2
        second = container_of(session)
    assert left([first, second]) == []


async def test_a_session_with_a_missing_image_leaves_no_container(tmp_path: Path) -> None:
    before = session_containers_of(os.getpid())
    session = container_session(tmp_path, image="py-code-mode-test/no-such-image:1")
    with pytest.raises(Exception, match="not present"):
        await session.start()
    await session.close()
    assert session_containers_of(os.getpid()) - before == set()


def test_a_session_garbage_collected_without_close_gets_its_container_removed(
    tmp_path: Path,
) -> None:
    async def start() -> str:
        session = container_session(tmp_path)
        await session.start()
        return container_of(session)

    container_id = asyncio.run(start())  # the loop ends; the session is never closed
    assert exists(container_id)
    gc.collect()
    assert left([container_id]) == []


HOST = """
import asyncio, sys, time
from pathlib import Path
from py_code_mode import FileStorage, Session
from py_code_mode.execution import ContainerConfig, ContainerExecutor

async def main():
    config = ContainerConfig(image=sys.argv[2], warm_pool=1, runtime=sys.argv[3] or None)
    session = Session(FileStorage(Path(sys.argv[1])), ContainerExecutor(config))
    await session.start()
    await ContainerExecutor.prewarm(config, 1)
    print("ready", flush=True)

asyncio.run(main())  # exits without closing the session
"""


def test_a_host_that_exits_without_closing_leaves_no_container(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(tmp_path), TEST_IMAGE, TEST_RUNTIME or ""],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        assert host.stdout.readline().strip() == "ready"
        import docker

        client = docker.from_env(timeout=10)
        try:
            made = [
                c["Id"]
                for c in client.api.containers(
                    all=True, filters={"label": f"{LABEL_OWNER_PID}={host.pid}"}
                )
            ]
        finally:
            client.close()
        assert len(made) >= 2, "the session's container and a pooled one"
        assert host.wait(WAIT) == 0
        assert left(list(made)) == []
    finally:
        host.kill()
        host.wait(WAIT)
        if host.stdout is not None:
            host.stdout.close()


def fds() -> set[str]:
    # The SDK keeps idle HTTP connections to the engine in bounded pools; let go of them
    # so that only what sessions hold is counted.
    for client in list(engine._clients.values()):
        client.close()
    return set(os.listdir("/proc/self/fd"))


def threads() -> list[str]:
    # The loop's default executor keeps its bounded pool of threads between calls.
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def per_container_threads() -> list[str]:
    return [
        name for name in threads() if name.startswith(("py-code-mode-wait-", "py-code-mode-rm-"))
    ]


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_fifty_sessions_in_a_row_return_fds_and_threads_to_the_baseline(
    tmp_path: Path,
) -> None:
    async with container_session(tmp_path) as warm:
        await warm.run("1")
    made: list[str] = []
    gc.collect()
    assert await asyncio.to_thread(wait_for, lambda: not per_container_threads())
    fds_before, threads_before = fds(), threads()
    for _ in range(50):
        async with container_session(tmp_path) as session:
            assert (await session.run("1 + 1")).value == 2
            made.append(container_of(session))
    gc.collect()
    # Each container's exit watcher ends once the engine reports it removed.
    assert await asyncio.to_thread(wait_for, lambda: threads() == threads_before)
    assert fds() - fds_before == set()
    assert left(list(made)) == []
