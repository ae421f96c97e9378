"""Closes, timeouts and resets end everything agent code started, escapes included."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from py_code_mode import ConfigError, FileStorage, Session
from py_code_mode._private.worker_jail import process_tree
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

from .conftest import variant_problem

ESCAPE = """
import os, subprocess, threading, time
subprocess.Popen(['sleep', '{marker}'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '{marker}'])
    os._exit(0)
threading.Thread(target=time.sleep, args=(300,), daemon=True).start()
'started'
"""


@pytest.fixture(autouse=True)
def _need_bwrap() -> None:
    problem = variant_problem("subprocess-bwrap")
    if problem is not None:
        pytest.skip(problem)


def marker_processes(marker: str) -> list[int]:
    """Host processes whose command line carries ``marker``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(name))
    return found


def wait_started(marker: str, count: int, exclude: int = 0, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in marker_processes(marker) if p != exclude]
        if len(found) >= count:
            return len(found)
        time.sleep(0.02)
    return len([p for p in marker_processes(marker) if p != exclude])


def wait_gone(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := marker_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def jailed(tmp_path: Path, **config: object) -> Session:
    executor = SubprocessExecutor(SubprocessConfig(isolation="bwrap", **config))  # type: ignore[arg-type]
    return Session(storage=FileStorage(tmp_path / "data"), executor=executor)


async def test_close_ends_setsid_and_double_fork_escapes(tmp_path: Path) -> None:
    marker = "3131.25"
    session = jailed(tmp_path)
    await session.start()
    result = await session.run(ESCAPE.format(marker=marker))
    assert result.value == "started", result.error
    assert wait_started(marker, 2) == 2
    executor = session.executor
    assert isinstance(executor, SubprocessExecutor)
    assert executor.worker_pid is not None
    tree, _ = process_tree(executor.worker_pid)
    await session.close()
    assert wait_gone(marker) == []
    assert [p for p in tree if Path(f"/proc/{p}").exists() and _alive(p)] == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def test_a_timeout_ends_threads_and_processes_the_run_started(tmp_path: Path) -> None:
    marker = "3131.5"
    async with jailed(tmp_path, interrupt_grace=2.0) as session:
        await session.run("kept = 1")
        code = ESCAPE.format(marker=marker) + "\nwhile True:\n    time.sleep(0.01)\n"
        result = await session.run(code, timeout=1.0)
        assert result.error_type == "TimeoutError"
        assert result.variables_lost
        assert "left" in (result.error or "")
        assert "replaced" in (result.error or "")
        assert wait_gone(marker) == []
        after = await session.run("'kept' in globals()")
        assert after.is_ok
        assert after.value is False


async def test_a_timeout_that_left_nothing_running_keeps_the_variables(tmp_path: Path) -> None:
    async with jailed(tmp_path, interrupt_grace=2.0) as session:
        await session.run("kept = 1")
        result = await session.run("while True:\n    pass", timeout=0.5)
        assert result.error_type == "TimeoutError"
        assert not result.variables_lost, result.error
        assert (await session.run("kept")).value == 1


async def test_reset_gives_a_fresh_worker_without_poisoned_modules(tmp_path: Path) -> None:
    async with jailed(tmp_path) as session:
        poison = "import string, sys\nstring.digits = 'pwned'\nsys.modules['evil'] = string"
        assert (await session.run(poison)).is_ok
        await session.reset()
        after = await session.run("import string, sys\n[string.digits, 'evil' in sys.modules]")
        assert after.value == ["0123456789", False]


HOST_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from py_code_mode import ConfigError, FileStorage, Session
from py_code_mode._private.worker_jail import process_tree
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

async def main():
    executor = SubprocessExecutor(SubprocessConfig(isolation="bwrap"))
    session = Session(FileStorage(Path(sys.argv[1])), executor)
    await session.start()
    await session.run(sys.argv[2])
    print(json.dumps(process_tree(executor.worker_pid)[0]), flush=True)
    await session.run("import time\\ntime.sleep(300)")

asyncio.run(main())
"""


def test_killing_the_host_leaves_no_jailed_process_behind(tmp_path: Path) -> None:
    marker = "3131.75"
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path / "data"), ESCAPE.format(marker=marker)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        tree = json.loads(host.stdout.readline())
        assert len(tree) >= 4
        assert wait_started(marker, 2, exclude=host.pid) == 2
        host.kill()
        host.wait(10)
        assert wait_gone(marker) == []
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in tree if _alive(p)] == []
    finally:
        host.kill()
        host.wait(10)
        if host.stdout is not None:
            host.stdout.close()


async def test_the_session_limits_hold_across_all_processes_of_a_session(tmp_path: Path) -> None:
    from py_code_mode._private import cgroups

    if not cgroups.support().version:
        pytest.skip(f"no session cgroups here: {cgroups.support().detail}")
    async with jailed(tmp_path, memory_limit="256m", max_processes=64) as session:
        code = textwrap.dedent(
            """
            import subprocess, sys
            hog = 'x = bytearray(150 << 20); import time; time.sleep(3)'
            procs = [subprocess.Popen([sys.executable, '-c', hog]) for _ in range(3)]
            [p.wait(30) for p in procs]
            """
        )
        result = await session.run(code, timeout=60)
        codes = result.value if result.is_ok else None
        # Three children of 150 MiB each fit their own rlimit but not the session's 256 MiB.
        assert result.error_type == "WorkerDied" or (codes and any(c != 0 for c in codes)), result
        await asyncio.sleep(0)
        assert (await session.run("1 + 1")).value == 2


async def test_sessions_from_the_warm_pool_are_jailed_and_share_nothing(tmp_path: Path) -> None:
    from py_code_mode._private.worker_pool import pool

    config = {"warm_pool": 1}
    try:
        async with jailed(tmp_path, **config) as first:
            await first.run("open('/work/mine.txt', 'w').write('first')")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not pool.waiting():
                await asyncio.sleep(0.05)
            assert pool.waiting() == 1
        async with jailed(tmp_path, **config) as second:
            seen = await second.run(
                "import os\n[os.getuid(), os.path.exists('/work/mine.txt'), 'pwned' in globals()]"
            )
            assert seen.value == [65534, False, False]
            executor = second.executor
            assert isinstance(executor, SubprocessExecutor)
            assert executor.venv_path is not None
    finally:
        pool.drain()


@pytest.mark.parametrize("runtime", [None, "runsc"], ids=["runc", "runsc"])
async def test_a_container_timeout_ends_threads_the_run_left(
    tmp_path: Path, runtime: str | None
) -> None:
    problem = variant_problem("container-runsc" if runtime else "container-runc")
    if problem is not None:
        pytest.skip(problem)
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    from ..execution._container_support import TEST_IMAGE

    config = ContainerConfig(image=TEST_IMAGE, runtime=runtime, interrupt_grace=2.0)
    storage = FileStorage(tmp_path / "data")
    async with Session(storage=storage, executor=ContainerExecutor(config)) as session:
        await session.run("kept = 1")
        clean = await session.run("while True:\n    pass", timeout=0.5)
        assert clean.error_type == "TimeoutError"
        # gVisor hides the sandbox's threads from the host: every timeout replaces it.
        assert clean.variables_lost == (runtime == "runsc"), clean.error
        await session.run("kept = 1")
        code = (
            "import threading, time\n"
            "threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
            "while True:\n    time.sleep(0.01)"
        )
        left = await session.run(code, timeout=1.0)
        assert left.error_type == "TimeoutError"
        assert left.variables_lost, left.error
        assert "replaced" in (left.error or "")
        after = await session.run("'kept' in globals()")
        assert after.value is False


async def test_a_jailed_worker_has_the_network_only_when_configured(tmp_path: Path) -> None:
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2).close()\n'reached'"
    try:
        async with jailed(tmp_path) as session:
            refused = await session.run(code)
            assert refused.error_type == "ConnectionRefusedError", refused
        async with jailed(tmp_path, network="full") as session:
            reached = await session.run(code)
            assert reached.value == "reached", reached.error
    finally:
        server.close()
    with pytest.raises(ConfigError, match="allowlist"):
        SubprocessConfig(network="allowlist")
