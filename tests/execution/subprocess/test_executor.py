"""The subprocess executor: isolation, faults, limits, environments and cleanup.

Behaviour shared with other executors lives in the contract suite; these tests
cover what only a separate worker process can do (and must survive).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ConfigError, ExecutionResult, FileStorage, Session
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

IS_ROOT = os.geteuid() == 0


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone: it runs no code)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_until_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if pid_alive(p)]
    return alive


@pytest.fixture
def executor_kind() -> str:
    """Pins conftest.py's ``make_session`` and ``session`` fixtures to this executor."""
    return "subprocess"


def worker_pid(session: Session) -> int:
    executor = session.executor
    assert isinstance(executor, SubprocessExecutor)
    pid = executor.worker_pid
    assert pid is not None
    return pid


async def kill_worker_and_wait(session: Session) -> None:
    """SIGKILL the worker from outside and wait until the executor has noticed."""
    pid = worker_pid(session)
    os.kill(pid, signal.SIGKILL)
    assert wait_until_gone([pid]) == []
    executor = session.executor
    assert isinstance(executor, SubprocessExecutor)
    deadline = time.monotonic() + 10
    while executor.worker_pid is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert executor.worker_pid is None


async def run_ok(session: Session, code: str, timeout: float | None = None) -> Any:
    result = await session.run(textwrap.dedent(code), timeout=timeout)
    assert result.is_ok, result.error
    return result.value


# -- isolation ---------------------------------------------------------------------------
async def test_code_runs_in_a_separate_process_without_py_code_mode(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(isolation="none") as session:
        pid = await run_ok(session, "import os\nos.getpid()")
        assert pid != os.getpid()
        assert pid == worker_pid(session)
    async with make_session() as session:
        pid = await run_ok(session, "import os\nos.getpid()")
        assert pid == 2  # jailed: its own pid namespace, under bwrap's init
        result = await session.run("import py_code_mode")
        assert result.error_type == "ModuleNotFoundError"


async def test_host_secrets_in_the_environment_never_reach_the_worker(
    make_session: Callable[..., Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PCM_TEST_API_KEY", "s3cr3t-value")
    monkeypatch.setenv("REDIS_URL", "redis://:password@db:6379")
    monkeypatch.setenv("PCM_TEST_PASSED_ON", "copied")
    config_env = {"PCM_TEST_PASSED_ON": None, "PCM_TEST_SET": "set-by-config"}
    async with make_session(env=config_env) as session:
        seen = await run_ok(
            session,
            """
            import os, subprocess
            child_env = subprocess.run(['env'], capture_output=True, text=True).stdout
            [os.environ.get('PCM_TEST_API_KEY'), os.environ.get('REDIS_URL'),
             's3cr3t' in child_env, os.environ.get('PCM_TEST_PASSED_ON'),
             os.environ.get('PCM_TEST_SET')]
            """,
        )
    assert seen == [None, None, False, "copied", "set-by-config"]


async def test_the_worker_has_its_own_working_directory_removed_at_close(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(isolation="none") as session:
        cwd = await run_ok(session, "import os\nopen('note.txt', 'w').write('x')\nos.getcwd()")
        assert cwd != os.getcwd()
        assert Path(cwd, "note.txt").exists()
    assert not Path(cwd).exists()


async def test_a_given_working_directory_is_used_and_kept(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "helper_mod.py").write_text("VALUE = 7\n")
    async with make_session(working_dir=work) as session:
        assert await run_ok(session, "import helper_mod\nhelper_mod.VALUE") == 7
    assert (work / "helper_mod.py").exists()


async def test_writes_to_the_real_stdout_and_stderr_cannot_corrupt_the_protocol(
    session: Session,
) -> None:
    result = await session.run(
        textwrap.dedent(
            """
            import os, sys, subprocess
            os.write(1, b'\\x00\\x00\\x00\\x05hello')
            os.write(2, b'\\xff\\xfe not utf-8 on fd 2\\n')
            sys.__stdout__.write('dunder stdout\\n')
            subprocess.run(['sh', '-c', 'echo from-child; echo child-err >&2'])
            print('printed')
            """
        )
    )
    assert result.is_ok, result.error
    for piece in ("hello", "not utf-8 on fd 2", "dunder stdout", "from-child", "child-err"):
        assert piece in result.stdout
    assert await run_ok(session, "21 * 2") == 42


async def test_output_of_child_processes_keeps_its_order_with_prints(session: Session) -> None:
    result = await session.run("import os\nprint('a', flush=True)\nos.system('echo b')\nprint('c')")
    assert result.stdout == "a\nb\nc\n"


async def test_bytes_and_unsendable_values_across_the_boundary(session: Session) -> None:
    assert await run_ok(
        session, "artifacts.save('b', bytes(range(256)))\nartifacts.load('b') == bytes(range(256))"
    )
    unsendable = await session.run("artifacts.save('s', {1, 2})")
    assert unsendable.error_type == "ArtifactError"
    assert "set" in (unsendable.error or "")
    bad_arg = await session.run("tools.greet(text=object())")
    assert bad_arg.error_type == "ToolError"


async def test_a_value_too_large_to_send_back_is_an_error_and_the_run_still_counted(
    session: Session,
) -> None:
    result = await session.run("big = 'x' * 100_000_000\nbig")
    assert result.error_type == "ValueError"
    assert "could not be sent back" in (result.error or "")
    assert await run_ok(session, "len(big)") == 100_000_000


# -- timeouts ----------------------------------------------------------------------------
async def test_an_infinite_loop_is_interrupted_and_variables_are_kept(session: Session) -> None:
    await run_ok(session, "kept = 'yes'")
    pid = worker_pid(session)
    started = time.monotonic()
    result = await session.run("print('looping')\nwhile True:\n    pass", timeout=1)
    assert time.monotonic() - started < 3
    assert result.error_type == "TimeoutError"
    assert "interrupted; variables are kept" in (result.error or "")
    assert not result.variables_lost
    assert "looping" in result.stdout
    assert await run_ok(session, "kept") == "yes"
    assert worker_pid(session) == pid


async def test_code_that_ignores_the_interrupt_gets_the_worker_killed(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(interrupt_grace=0.3) as session:
        await run_ok(session, "kept = 1")
        pid = worker_pid(session)
        result = await session.run(
            textwrap.dedent(
                """
                import time
                print('stubborn', flush=True)
                while True:
                    try:
                        time.sleep(10)
                    except KeyboardInterrupt:
                        pass
                """
            ),
            timeout=0.7,
        )
        assert result.error_type == "TimeoutError"
        assert "worker process was killed" in (result.error or "")
        assert "variables were lost" in (result.error or "")
        assert result.variables_lost
        assert "stubborn" in result.stdout
        assert wait_until_gone([pid]) == []
        after = await session.run("'kept' in dir()")
        assert after.value is False
        assert worker_pid(session) != pid


async def test_an_interrupt_during_namespace_calls_never_breaks_the_connection(
    session: Session,
) -> None:
    for _ in range(3):
        result = await session.run("while True:\n    artifacts.exists('x')", timeout=0.3)
        assert result.error_type == "TimeoutError"
        assert not result.variables_lost
    assert await run_ok(session, "artifacts.exists('x')") is False


async def test_a_cancelled_run_is_interrupted_and_the_session_goes_on(session: Session) -> None:
    await run_ok(session, "kept = 3")
    task = asyncio.create_task(session.run("while True:\n    pass"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await run_ok(session, "kept", timeout=5) == 3


# -- the worker dying --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "cause"),
    [
        ("import os\nos._exit(3)", "exited with code 3"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "SIGKILL"),
        ("import ctypes\nctypes.string_at(0)", "SIGSEGV"),
    ],
    ids=["os-exit", "self-kill", "segfault"],
)
async def test_a_worker_that_dies_mid_run_is_reported_and_replaced(
    session: Session, code: str, cause: str
) -> None:
    await run_ok(session, "kept = 1")
    pid = worker_pid(session)
    result = await session.run(
        "import time\nprint('last words', flush=True)\ntime.sleep(0.4)\n" + code
    )
    assert result.error_type == "WorkerDied"
    assert cause in (result.error or "")
    assert "variables were lost" in (result.error or "")
    assert result.variables_lost
    assert "last words" in result.stdout
    assert await run_ok(session, "'kept' in dir()") is False
    assert worker_pid(session) != pid


async def test_a_worker_killed_from_outside_between_runs_is_replaced_and_says_so(
    session: Session,
) -> None:
    await run_ok(session, "kept = 1")
    await kill_worker_and_wait(session)
    result = await session.run("'kept' in dir()")
    assert result.is_ok
    assert result.value is False
    assert result.variables_lost
    assert "SIGKILL" in result.stdout
    assert "variables from earlier runs were lost" in result.stdout
    follow_up = await session.run("1")
    assert follow_up.stdout == ""
    assert not follow_up.variables_lost


async def test_reset_after_the_worker_died_gives_a_working_fresh_worker(session: Session) -> None:
    await kill_worker_and_wait(session)
    await session.reset()
    assert await run_ok(session, "2 + 2") == 4


# -- limits ------------------------------------------------------------------------------
async def test_a_memory_bomb_hits_the_limit_and_the_session_survives(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(memory_limit="512m") as session:
        await run_ok(session, "kept = 'yes'")
        at_once = await session.run("hog = bytearray(2 * 1024 ** 3)")
        assert at_once.error_type == "MemoryError"
        growing = await session.run("hog = []\nwhile True:\n    hog.append(bytearray(10 ** 7))")
        assert growing.error_type == "MemoryError"
        assert await run_ok(session, "del hog\nkept") == "yes"


async def test_open_files_and_file_size_limits_apply(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(max_open_files=64, max_file_size_mb=1) as session:
        limits = await run_ok(
            session,
            "import resource\n[resource.getrlimit(resource.RLIMIT_NOFILE), "
            "resource.getrlimit(resource.RLIMIT_FSIZE), resource.getrlimit(resource.RLIMIT_CORE)]",
        )
        assert limits == "[(64, 64), (1048576, 1048576), (0, 0)]"
        too_many = await session.run("files = [open('/dev/null') for _ in range(100)]")
        assert too_many.error_type == "OSError"
        assert "Too many open files" in (too_many.error or "")
        too_big = await session.run("open('big.bin', 'wb').write(b'x' * 2_000_000)")
        assert too_big.error_type == "OSError"
        assert "too large" in (too_big.error or "").lower()
        assert await run_ok(session, "'alive'") == "alive"


async def test_a_bounded_fork_storm_leaves_nothing_behind_after_close(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(isolation="none") as session:
        pids = await run_ok(
            session,
            """
            import os, subprocess, time
            pids = [subprocess.Popen(['sleep', '300']).pid for _ in range(60)]
            for _ in range(20):
                child = os.fork()
                if child == 0:
                    time.sleep(300)
                    os._exit(0)
                pids.append(child)
            pids
            """,
        )
        assert len(pids) == 80
        assert all(pid_alive(p) for p in pids)
        pids.append(worker_pid(session))
    assert wait_until_gone(pids) == []


@pytest.mark.skipif(IS_ROOT, reason="the kernel exempts root from RLIMIT_NPROC")
async def test_the_process_limit_stops_a_fork_storm(make_session: Callable[..., Session]) -> None:
    async with make_session(max_processes=16) as session:
        result = await session.run(
            "import subprocess\nprocs = [subprocess.Popen(['sleep', '30']) for _ in range(200)]"
        )
        assert result.error_type in ("BlockingIOError", "OSError")
        assert await run_ok(session, "1") == 1


async def test_huge_output_from_every_source_is_capped_and_the_host_survives(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(output_limit=100_000) as session:
        for code in (
            "print('x' * 100_000_000)",
            "import os\nos.write(1, b'y' * 50_000_000)",
            "import subprocess\nsubprocess.run(['head', '-c', '50000000', '/dev/zero'])",
            "for _ in range(200_000):\n    print('line of output')",
        ):
            result = await session.run(code)
            assert result.is_ok, result.error
            assert "truncated" in result.stdout
            assert len(result.stdout) < 200_000
        assert await run_ok(session, "'still here'") == "still here"


# -- cleanup -----------------------------------------------------------------------------
async def test_close_leaves_no_worker_and_no_child_processes(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(isolation="none")
    await session.start()
    pids = await run_ok(
        session,
        """
        import os, subprocess, threading, time
        sleeper = subprocess.Popen(['sleep', '300'])
        child = os.fork()
        if child == 0:
            time.sleep(300)
            os._exit(0)
        threading.Thread(target=time.sleep, args=(300,)).start()
        [os.getpid(), sleeper.pid, child]
        """,
    )
    await session.close()
    assert wait_until_gone(pids) == []


HOST_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from py_code_mode import FileStorage, Session
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

async def main():
    executor = SubprocessExecutor(SubprocessConfig(isolation="none"))
    session = Session(FileStorage(Path(sys.argv[1])), executor)
    await session.start()
    result = await session.run(
        "import os, subprocess\\n"
        "sleeper = subprocess.Popen(['sleep', '300'])\\n"
        "[os.getpid(), sleeper.pid]"
    )
    print(json.dumps(result.value), flush=True)
    busy = asyncio.create_task(session.run(sys.argv[2]))
    await asyncio.sleep(0.3)
    print("busy", flush=True)
    await busy

asyncio.run(main())
"""


@pytest.mark.parametrize(
    "busy_code",
    ["import time\ntime.sleep(300)", "sum(range(10 ** 13))"],
    ids=["sleeping", "stuck-in-native-code"],
)
def test_killing_the_host_process_leaves_no_worker_behind(tmp_path: Path, busy_code: str) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path / "data"), busy_code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        pids = json.loads(host.stdout.readline())
        assert host.stdout.readline().strip() == "busy"
        assert all(pid_alive(p) for p in pids)
        host.kill()
        host.wait(10)
        assert wait_until_gone(pids) == []
    finally:
        host.kill()
        host.wait(10)
        if host.stdout is not None:
            host.stdout.close()


# -- environments ------------------------------------------------------------------------
async def test_sessions_with_the_same_deps_share_one_cached_venv_built_once(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, second = make_session(cache_dir=cache), make_session(cache_dir=cache)
    await asyncio.gather(first.start(), second.start())
    try:
        venvs = {s.executor.venv_path for s in (first, second)}  # type: ignore[attr-defined]
        assert len(venvs) == 1
        venv = venvs.pop()
        assert venv is not None
        assert venv.parent == cache / "venvs"
        assert [p.name for p in (cache / "venvs").iterdir() if p.is_dir()] == [venv.name]
        prefix = await run_ok(first, "import sys\nsys.prefix")
        assert Path(prefix) == venv
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_another_python_version_can_be_chosen(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    wanted = "3.12" if sys.version_info[:2] != (3, 12) else "3.11"
    executor = SubprocessExecutor(SubprocessConfig(python_version=wanted, cache_dir=tmp_path))
    try:
        async with Session(FileStorage(tmp_path / "data"), executor) as session:
            assert await run_ok(session, "import sys\n'%d.%d' % sys.version_info[:2]") == wanted
    except ConfigError as exc:
        pytest.skip(f"no Python {wanted} here: {exc}")


def uv_can_reach_an_index() -> bool:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import urllib.request as u; u.urlopen('https://pypi.org/simple/six/', timeout=5)",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.slow
async def test_runtime_deps_install_into_the_session_not_the_shared_venv(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    if not uv_can_reach_an_index():
        pytest.skip("no package index reachable")
    cache = tmp_path / "cache"
    async with make_session(cache_dir=cache) as session:
        added = await session.run("deps.add('six')\nimport six\nsix.__file__")
        assert added.is_ok, added.error
        venv = session.executor.venv_path  # type: ignore[attr-defined]
        assert not str(added.value).startswith(str(venv))
        assert await run_ok(session, "deps.list()") == ["six"]
        assert await run_ok(session, "deps.remove('six')") is True
        gone = await run_ok(
            session,
            "import os, sys, importlib.util\ndel sys.modules['six']\n"
            "[os.path.exists(six.__file__), importlib.util.find_spec('six')]",
        )
        assert gone == [False, None]
        await run_ok(session, "deps.add('six')")
    # A new session lists six in storage, so it gets a cached venv that includes it.
    async with make_session(cache_dir=cache) as session:
        located = await run_ok(session, "import six, sys\nsix.__file__.startswith(sys.prefix)")
        assert located is True


async def test_an_unknown_python_version_fails_to_start_with_a_clear_error(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(python_version="3.99")
    with pytest.raises(ConfigError, match=r"no Python 3\.99 interpreter"):
        await session.start()
    result = await make_session(python_version="3.99").run("1")
    assert result.error_type == "ConfigError"


async def test_a_venv_path_that_is_not_a_venv_is_refused(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    not_venv = tmp_path / "stuff"
    not_venv.mkdir()
    (not_venv / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a virtual environment"):
        await make_session(venv_path=not_venv).start()


async def test_a_given_venv_path_is_created_and_used(
    make_session: Callable[..., Session], tmp_path: Path
) -> None:
    venv = tmp_path / "my-venv"
    async with make_session(venv_path=venv) as session:
        assert Path(await run_ok(session, "import sys\nsys.prefix")) == venv
    assert (venv / "bin" / "python").exists()


def test_the_executor_refuses_a_foreign_config() -> None:
    with pytest.raises(ConfigError, match="expects a SubprocessConfig"):
        SubprocessExecutor({"tools_path": None})  # type: ignore[arg-type]


async def test_results_are_execution_results_with_timing(session: Session) -> None:
    result = await session.run("1")
    assert isinstance(result, ExecutionResult)
    assert result.execution_time_ms > 0
