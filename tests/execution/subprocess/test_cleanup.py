"""Nothing a session uses outlives it: worker processes, scratch dirs, cgroups, fds, threads.

Operators run many sessions for days, so every way a session can end is checked here
against the real resources it made: closed normally or twice, closed mid-run, after a
timeout, a reset or a worker killed from outside, a start that failed, a session
dropped without ``close()`` (garbage-collected, or left open at interpreter exit) and
a host killed outright (then the next start sweeps what it left).

Other engineers run tests on this machine at the same time, so the tests only look at
resources their own sessions made (read from the executor and from ``/proc``), never
at global counts of ``/tmp`` or cgroups.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode._private import cgroups, scratch
from py_code_mode._private.worker_jail import process_tree
from py_code_mode._private.worker_pool import pool
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

WAIT = 15.0


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it runs no code)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``check`` until it holds or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass
class Footprint:
    """What one subprocess session made outside this process."""

    scratch: Path | None
    cgroups: list[Path]
    pids: list[int]

    @classmethod
    def of(cls, executor: SubprocessExecutor) -> Footprint:
        jail = executor._jail
        pid = executor.worker_pid
        return cls(
            scratch=executor._scratch,
            cgroups=[] if jail is None or jail.cgroup is None else list(jail.cgroup.dirs),
            pids=[] if pid is None else process_tree(pid)[0],
        )

    def left(self) -> list[str]:
        """What is still there, after waiting (bounded) for the processes to end."""
        wait_for(lambda: not any(alive(p) for p in self.pids))
        found = [f"pid {p}" for p in self.pids if alive(p)]
        if self.scratch is not None and self.scratch.exists():
            found.append(str(self.scratch))
        found += [str(d) for d in self.cgroups if d.exists()]
        return found

    def as_json(self) -> str:
        return json.dumps(
            {
                "scratch": None if self.scratch is None else str(self.scratch),
                "cgroups": [str(d) for d in self.cgroups],
                "pids": self.pids,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Footprint:
        data = json.loads(text)
        path = data["scratch"]
        return cls(
            None if path is None else Path(path), [Path(d) for d in data["cgroups"]], data["pids"]
        )


def subprocess_session(tmp_path: Path, **config: Any) -> Session:
    executor = SubprocessExecutor(SubprocessConfig(**config))
    return Session(storage=FileStorage(tmp_path / "data"), executor=executor)


def footprint(session: Session) -> Footprint:
    executor = session.executor
    assert isinstance(executor, SubprocessExecutor)
    return Footprint.of(executor)


def own_scratch_dirs() -> set[Path]:
    """The scratch dirs that name this test process as their owner."""
    base = Path(tempfile.gettempdir())
    return {p for p in base.glob(f"{scratch.PREFIX}*{os.getpid()}-*") if p.is_dir()}


# -- a session that ends normally --------------------------------------------------------
async def test_a_closed_session_leaves_no_worker_scratch_dir_or_cgroup(tmp_path: Path) -> None:
    async with subprocess_session(tmp_path) as session:
        result = await session.run("import os\nos.getpid()")
        assert result.error is None
        made = footprint(session)
        assert made.scratch is not None
        assert made.scratch.is_dir()
        assert made.pids
    assert made.left() == []


async def test_closing_twice_is_harmless_and_frees_everything(tmp_path: Path) -> None:
    session = subprocess_session(tmp_path)
    await session.start()
    made = footprint(session)
    await session.close()
    await session.close()
    assert made.left() == []


async def test_closing_during_a_run_ends_the_run_and_frees_everything(tmp_path: Path) -> None:
    session = subprocess_session(tmp_path)
    await session.start()
    made = footprint(session)
    run = asyncio.create_task(session.run("import time\ntime.sleep(60)"))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(session.close(), WAIT)
    result = await asyncio.wait_for(run, WAIT)
    assert result.error is not None
    assert made.left() == []


async def test_a_timed_out_run_with_threads_and_children_leaves_none_of_them(
    tmp_path: Path,
) -> None:
    code = (
        "import subprocess, threading, time\n"
        "threading.Thread(target=time.sleep, args=(300,)).start()\n"
        "children = [subprocess.Popen(['sleep', '300']) for _ in range(2)]\n"
        "time.sleep(300)\n"
    )
    async with subprocess_session(tmp_path, interrupt_grace=1.0) as session:
        first = footprint(session)
        run = asyncio.create_task(session.run(code, timeout=3))
        assert await asyncio.to_thread(wait_for, lambda: len(process_tree(first.pids[0])[0]) > 3)
        during = Footprint(first.scratch, first.cgroups, process_tree(first.pids[0])[0])
        result = await asyncio.wait_for(run, WAIT)
        assert result.error_type == "TimeoutError"
        assert await asyncio.to_thread(wait_for, lambda: not any(alive(p) for p in during.pids))
        assert (await session.run("1 + 1")).value == 2
        after = footprint(session)
    assert during.left() == []
    assert after.left() == []


async def test_a_reset_ends_the_old_worker_and_close_frees_the_new_one(tmp_path: Path) -> None:
    async with subprocess_session(tmp_path) as session:
        before = footprint(session)
        await session.reset()
        after = footprint(session)
        assert set(before.pids).isdisjoint(after.pids)
        assert await asyncio.to_thread(wait_for, lambda: not any(alive(p) for p in before.pids))
    assert after.left() == []


async def test_a_worker_killed_from_outside_is_replaced_and_nothing_is_left(
    tmp_path: Path,
) -> None:
    async with subprocess_session(tmp_path) as session:
        before = footprint(session)
        os.kill(before.pids[0], signal.SIGKILL)
        assert await asyncio.to_thread(wait_for, lambda: not alive(before.pids[0]))
        assert (await session.run("1 + 1")).value == 2
        after = footprint(session)
    assert before.left() == []
    assert after.left() == []


async def test_a_session_that_failed_to_start_leaves_no_scratch_dir(tmp_path: Path) -> None:
    before = own_scratch_dirs()
    # Fails after the scratch dir and the venv are made: the working dir is a file.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    session = subprocess_session(tmp_path, working_dir=blocker)
    with pytest.raises(Exception):
        await session.start()
    await session.close()
    assert own_scratch_dirs() - before == set()


# -- a session dropped without close() ---------------------------------------------------
def test_a_session_garbage_collected_without_close_frees_what_it_made(tmp_path: Path) -> None:
    async def start() -> Footprint:
        session = subprocess_session(tmp_path)
        await session.start()
        return footprint(session)

    made = asyncio.run(start())  # the loop ends; the session is never closed
    assert made.pids
    assert alive(made.pids[0])
    gc.collect()
    assert made.left() == []


HOST = """
import asyncio, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_cleanup import Footprint, subprocess_session
from py_code_mode._private.worker_pool import pool

async def main():
    session = subprocess_session(Path(sys.argv[1]), warm_pool=int(sys.argv[3]))
    await session.start()
    print(Footprint.of(session.executor).as_json(), flush=True)
    deadline = time.monotonic() + 15
    while pool.waiting() < int(sys.argv[3]) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for queue in pool._ready.values():
        for slot in queue:
            cgroups = [] if slot.jail.cgroup is None else slot.jail.cgroup.dirs
            print(Footprint(slot.scratch, cgroups, [slot.proc.pid]).as_json(), flush=True)
    print("ready", flush=True)
    if sys.argv[4] == "hang":
        await asyncio.sleep(300)

asyncio.run(main())  # exits without closing the session
"""


StartHost = Callable[[int, str], tuple[subprocess.Popen[str], list[Footprint]]]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[StartHost]:
    """Start a host process with one session (and ``warm`` pooled workers)."""
    started: list[subprocess.Popen[str]] = []

    def start(warm: int, then: str) -> tuple[subprocess.Popen[str], list[Footprint]]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                HOST,
                str(tmp_path),
                str(Path(__file__).parent),
                str(warm),
                then,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        assert proc.stdout is not None
        made: list[Footprint] = []
        for line in iter(proc.stdout.readline, ""):
            if line.strip() == "ready":
                return proc, made
            made.append(Footprint.from_json(line))
        raise AssertionError(f"the host process ended early ({proc.wait(WAIT)})")

    yield start
    for proc in started:
        proc.kill()
        proc.wait(WAIT)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_host_that_exits_without_closing_leaves_nothing_behind(host: StartHost) -> None:
    proc, made = host(1, "exit")
    assert proc.wait(WAIT * 2) == 0
    assert len(made) == 2, "the session and one waiting pool worker"
    assert all(m.scratch is not None for m in made)
    for footprint_ in made:
        assert footprint_.left() == []


def test_what_a_killed_host_left_is_swept_by_the_next_start(host: StartHost) -> None:
    proc, made = host(1, "hang")
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)
    # Its workers end on their own (they watch their host); its directories stay ...
    assert wait_for(lambda: not any(alive(p) for m in made for p in m.pids))
    left = [m.scratch for m in made if m.scratch is not None and m.scratch.exists()]
    assert left, "nothing to sweep: the test no longer shows the leak it guards against"
    # ... until the next start sweeps those of dead owners.
    swept = scratch.sweep_stale()
    assert set(left) <= set(swept)
    parents = sorted({d.parent for m in made for d in m.cgroups})
    cgroups._sweep(parents)
    for footprint_ in made:
        assert footprint_.left() == []


# -- the egress proxy --------------------------------------------------------------------
async def test_an_allowlist_session_removes_its_proxy_socket_dir_and_thread_at_close(
    tmp_path: Path,
) -> None:
    session = subprocess_session(tmp_path, network="allowlist", allow=["pypi.org"])
    await session.start()
    executor = session.executor
    assert isinstance(executor, SubprocessExecutor)
    assert executor._egress is not None
    socket_dir = executor._egress.socket_path.parent
    proxy_thread = executor._egress._thread
    assert socket_dir.is_dir()
    assert scratch.owner_pid(socket_dir.name) == os.getpid()
    assert proxy_thread is not None
    assert proxy_thread.is_alive()
    made = footprint(session)
    await session.close()
    assert not socket_dir.exists()
    assert await asyncio.to_thread(wait_for, lambda: not proxy_thread.is_alive())
    assert made.left() == []


def test_an_allowlist_session_dropped_without_close_removes_its_proxy_socket_dir(
    tmp_path: Path,
) -> None:
    async def start() -> Path:
        session = subprocess_session(tmp_path, network="allowlist", allow=["pypi.org"])
        await session.start()
        executor = session.executor
        assert isinstance(executor, SubprocessExecutor)
        assert executor._egress is not None
        return executor._egress.socket_path.parent

    socket_dir = asyncio.run(start())
    assert socket_dir.is_dir()
    gc.collect()
    assert not socket_dir.exists()


# -- the warm pool -----------------------------------------------------------------------
async def test_draining_the_pool_ends_its_waiting_workers_and_their_dirs(tmp_path: Path) -> None:
    async with subprocess_session(tmp_path, warm_pool=1) as session:
        assert (await session.run("1")).error is None
        assert await asyncio.to_thread(wait_for, lambda: pool.waiting() >= 1)
    waiting = [
        Footprint(
            slot.scratch, [] if slot.jail.cgroup is None else slot.jail.cgroup.dirs, [slot.proc.pid]
        )
        for queue in pool._ready.values()
        for slot in queue
    ]
    assert waiting
    await asyncio.to_thread(pool.drain)
    for made in waiting:
        assert made.left() == []


# -- many sessions -----------------------------------------------------------------------
def fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def threads() -> list[str]:
    # The loop's default executor keeps its (bounded) pool of threads between calls.
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_fifty_sessions_in_a_row_return_fds_and_threads_to_the_baseline(
    tmp_path: Path,
) -> None:
    async with subprocess_session(tmp_path) as warm:
        await warm.run("1")
    gc.collect()
    fds_before, threads_before = fds(), threads()
    made: list[Footprint] = []
    for _ in range(50):
        async with subprocess_session(tmp_path) as session:
            assert (await session.run("1 + 1")).value == 2
            made.append(footprint(session))
    gc.collect()
    assert threads() == threads_before
    assert fds() - fds_before == set()
    assert [m.left() for m in made if m.left()] == []
