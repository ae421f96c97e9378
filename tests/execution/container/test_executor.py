"""The container executor: isolation, hardening, faults, transports and cleanup.

Behaviour shared with the other executors runs in the contract suite (the
``container`` entry of ``EXECUTORS``). These tests cover what only a container
gives: no network, no host files, a read-only root, an unprivileged user, limits,
TCP authentication, and containers that never outlive their owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ConfigError, FileStorage, Session
from py_code_mode.errors import DependencyError, ExecutorError
from py_code_mode.execution import ContainerConfig, ContainerExecutor
from py_code_mode.execution.container import (
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABEL_OWNER_START,
    LABEL_SESSION,
    drain_warm_pool,
    reap_stray_containers,
)
from tests._tcp import attempt_handshake

from .._container_support import TEST_IMAGE, pypi_reachable, require_engine

REPO = Path(__file__).resolve().parents[3]
TOKEN = secrets.token_urlsafe(24)


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


def container_exists(container_id: str) -> bool:
    client = docker_client()
    try:
        return bool(client.api.containers(all=True, filters={"id": container_id}))
    finally:
        client.close()


def wait_until_removed(container_id: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while container_exists(container_id):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def make_session(tmp_path: Path, tools_dir: Path) -> Callable[..., Session]:
    require_engine()

    def make(**config: Any) -> Session:
        config.setdefault("tools_path", tools_dir)
        config.setdefault("image", TEST_IMAGE)
        executor = ContainerExecutor(ContainerConfig(**config))
        return Session(storage=FileStorage(tmp_path / "data"), executor=executor)

    return make


@pytest.fixture
async def session(make_session: Callable[..., Session]) -> AsyncIterator[Session]:
    async with make_session(warm_pool=1) as started:
        yield started


async def run_ok(session: Session, code: str) -> Any:
    result = await session.run(textwrap.dedent(code))
    assert result.is_ok, result.error
    return result.value


def container_id_of(session: Session) -> str:
    executor = session.executor
    assert isinstance(executor, ContainerExecutor)
    container_id = executor.container_id
    assert container_id is not None
    return container_id


# -- configuration ---------------------------------------------------------------------------
def test_the_executor_refuses_a_foreign_config() -> None:
    with pytest.raises(ConfigError, match="ContainerConfig"):
        ContainerExecutor({"image": "x"})  # type: ignore[arg-type]


async def test_a_missing_image_fails_to_start_naming_the_build_command(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(image="py-code-mode-test/missing:never")
    with pytest.raises(ConfigError, match="py-code-mode image build"):
        await session.start()
    await session.close()


async def test_an_image_without_the_interpreter_fails_to_start_clearly(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(python="python9")
    with pytest.raises(ExecutorError, match="python9"):
        await session.start()
    await session.close()


UNREACHABLE_SCRIPT = """
import asyncio, sys
from pathlib import Path
from py_code_mode import FileStorage, Session
from py_code_mode.errors import ExecutorError
from py_code_mode.execution import ContainerExecutor

async def main():
    session = Session(FileStorage(Path(sys.argv[1])), ContainerExecutor())
    try:
        await session.start()
    except ExecutorError as exc:
        print(exc)
    await session.close()

asyncio.run(main())
"""


def test_an_unreachable_engine_is_an_executor_error_saying_how_to_fix_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", UNREACHABLE_SCRIPT, str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no Docker engine is reachable" in done.stdout
    assert "DOCKER_HOST" in done.stdout


# -- hardening -------------------------------------------------------------------------------
async def test_the_container_is_hardened_and_labelled_with_its_owner(session: Session) -> None:
    client = docker_client()
    try:
        info = client.api.inspect_container(container_id_of(session))
    finally:
        client.close()
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 1 << 30
    assert host["NanoCpus"] == 10**9
    assert host["Binds"] in (None, [])
    assert set(host["Tmpfs"]) == {"/work", "/tmp"}
    labels = info["Config"]["Labels"]
    assert labels[LABEL_OWNER_PID] == str(os.getpid())
    assert labels[LABEL_OWNER_HOST] == socket.gethostname()
    assert labels[LABEL_OWNER_START]
    assert labels[LABEL_SESSION]


async def test_egress_is_blocked(session: Session) -> None:
    value = await run_ok(
        session,
        """
        import socket
        outcomes = []
        for target in [("1.1.1.1", 53), ("pypi.org", 443)]:
            try:
                socket.create_connection(target, timeout=3).close()
                outcomes.append("connected")
            except OSError as exc:
                outcomes.append(type(exc).__name__)
        with open("/proc/net/dev") as fh:
            interfaces = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
        [outcomes, interfaces]
        """,
    )
    outcomes, interfaces = value
    assert "connected" not in outcomes
    assert interfaces == ["lo"]


async def test_host_files_are_not_visible(session: Session, tmp_path: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("top secret")
    value = await run_ok(
        session,
        f"""
        import os
        [os.path.exists({str(secret)!r}), os.path.exists({str(REPO)!r}),
         sorted(os.listdir("/work")), os.path.exists("/var/run/docker.sock")]
        """,
    )
    assert value == [False, False, [".py-code-mode"], False]


async def test_the_root_filesystem_is_read_only_and_the_work_dir_is_writable(
    session: Session,
) -> None:
    value = await run_ok(
        session,
        """
        import errno, os
        failures = []
        for path in ["/usr/evil", "/etc/passwd", "/evil"]:
            try:
                with open(path, "a") as fh:
                    fh.write("x")
                failures.append("written")
            except OSError as exc:
                failures.append(errno.errorcode[exc.errno])
        with open("/work/notes.txt", "w") as fh:
            fh.write("fine")
        with open("/tmp/scratch", "w") as fh:
            fh.write("fine")
        [failures, os.getcwd()]
        """,
    )
    failures, cwd = value
    assert "written" not in failures
    assert set(failures) <= {"EROFS", "EACCES"}
    assert cwd == "/work"


async def test_code_runs_unprivileged_without_capabilities(session: Session) -> None:
    value = await run_ok(
        session,
        """
        import os
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        [os.getuid(), os.getgid(), status["CapEff"].strip(), status["NoNewPrivs"].strip()]
        """,
    )
    uid, gid, cap_eff, no_new_privs = value
    assert uid != 0
    assert gid != 0
    assert int(cap_eff, 16) == 0
    assert no_new_privs == "1"


async def test_host_secrets_in_the_environment_never_reach_the_container(
    make_session: Callable[..., Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PY_CODE_MODE_TEST_SECRET", "s3cret-value")
    monkeypatch.setenv("PY_CODE_MODE_TEST_SHARED", "shared-value")
    async with make_session(env={"GREETING": "hi", "PY_CODE_MODE_TEST_SHARED": None}) as session:
        value = await run_ok(
            session,
            """
            import os
            raw = open("/proc/self/environ", "rb").read().decode()
            ["s3cret" in raw, sorted(os.environ), os.environ["GREETING"],
             os.environ["PY_CODE_MODE_TEST_SHARED"]]
            """,
        )
    leaked, names, greeting, shared = value
    assert leaked is False
    assert "PY_CODE_MODE_TEST_SECRET" not in names
    assert greeting == "hi"
    assert shared == "shared-value"


async def test_a_memory_bomb_is_contained_and_the_session_survives(
    make_session: Callable[..., Session],
) -> None:
    async with make_session(memory_limit="128m") as session:
        await run_ok(session, "x = 1")
        result = await session.run("hog = b'x' * (512 * 1024 * 1024)", timeout=60)
        assert result.error_type in ("WorkerDied", "MemoryError"), result.error
        if result.error_type == "WorkerDied":
            assert result.error is not None
            assert "memory limit" in result.error
            assert result.variables_lost
        assert await run_ok(session, "2 + 2") == 4


async def test_a_fork_storm_stops_at_the_pids_limit(make_session: Callable[..., Session]) -> None:
    async with make_session(pids_limit=32) as session:
        value = await run_ok(
            session,
            """
            import os, time
            children = 0
            stopped_by = None
            for _ in range(500):
                try:
                    pid = os.fork()
                except OSError as exc:
                    stopped_by = type(exc).__name__
                    break
                if pid == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
            [children, stopped_by]
            """,
        )
        children, stopped_by = value
        assert children < 32
        assert stopped_by == "BlockingIOError"
        assert await run_ok(session, "'still answering'") == "still answering"


# -- faults ----------------------------------------------------------------------------------
async def test_code_that_ignores_the_interrupt_gets_a_fresh_container(session: Session) -> None:
    await run_ok(session, "kept = 1")
    first = container_id_of(session)
    result = await session.run(
        "import time\ntry:\n    time.sleep(60)\nexcept BaseException:\n    time.sleep(60)",
        timeout=1.0,
    )
    assert result.error_type == "TimeoutError"
    assert result.variables_lost
    assert result.error is not None
    assert "worker container was killed" in result.error
    assert await run_ok(session, "'kept' in dir()") is False
    assert container_id_of(session) != first
    assert await asyncio.to_thread(wait_until_removed, first)


async def test_a_worker_that_exits_mid_run_is_reported_and_replaced(session: Session) -> None:
    result = await session.run("import os\nprint('bye', flush=True)\nos._exit(3)")
    assert result.error_type == "WorkerDied"
    assert result.error is not None
    assert "exited with code 3" in result.error
    assert await run_ok(session, "40 + 2") == 42


async def test_a_container_removed_from_outside_is_replaced_and_the_next_run_says_so(
    session: Session,
) -> None:
    await run_ok(session, "kept = 1")
    container_id = container_id_of(session)
    client = docker_client()
    try:
        client.api.remove_container(container_id, force=True)
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while session.executor.container_id is not None and time.monotonic() < deadline:  # type: ignore[attr-defined]
        await asyncio.sleep(0.05)
    result = await session.run("'kept' in dir()")
    assert result.is_ok, result.error
    assert result.value is False
    assert result.variables_lost
    assert "fresh worker" in result.stdout
    assert "memory limit" not in result.stdout


# -- cleanup ---------------------------------------------------------------------------------
async def test_containers_are_removed_on_close(make_session: Callable[..., Session]) -> None:
    session = make_session()
    await session.start()
    container_id = container_id_of(session)
    assert container_exists(container_id)
    await session.close()
    assert not container_exists(container_id)


HOST_SCRIPT = """
import asyncio, sys
from pathlib import Path
from py_code_mode import FileStorage, Session
from py_code_mode.execution import ContainerConfig, ContainerExecutor

async def main():
    executor = ContainerExecutor(ContainerConfig(image=sys.argv[2]))
    session = Session(FileStorage(Path(sys.argv[1])), executor)
    await session.start()
    print(executor.container_id, flush=True)
    await session.run("import time\\ntime.sleep(300)")

asyncio.run(main())
"""


def test_killing_the_host_process_removes_its_container(tmp_path: Path) -> None:
    require_engine()
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(tmp_path / "data"), TEST_IMAGE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        container_id = host.stdout.readline().strip()
        assert container_id
        assert container_exists(container_id)
        host.kill()
        host.wait(10)
        assert wait_until_removed(container_id)
    finally:
        host.kill()
        host.wait(10)


async def test_stray_containers_of_dead_owners_are_reaped_and_live_ones_kept() -> None:
    require_engine()
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    client = docker_client()
    created = []
    try:
        for pid in (dead.pid, os.getpid()):
            labels = {
                LABEL_OWNER_PID: str(pid),
                LABEL_OWNER_HOST: socket.gethostname(),
                LABEL_OWNER_START: "",
                LABEL_SESSION: "test",
            }
            container = client.api.create_container(
                TEST_IMAGE,
                command=["python3", "-c", "import time; time.sleep(120)"],
                labels=labels,
                host_config=client.api.create_host_config(network_mode="none"),
            )
            client.api.start(container["Id"])
            created.append(container["Id"])
        stray, ours = created
        assert await reap_stray_containers() >= 1
        assert not container_exists(stray)
        assert container_exists(ours)
    finally:
        for container_id in created:
            with contextlib.suppress(Exception):
                client.api.remove_container(container_id, force=True)
        client.close()


# -- warm pool -------------------------------------------------------------------------------
@pytest.fixture
def pooled_config(tools_dir: Path) -> Iterator[ContainerConfig]:
    require_engine()
    config = ContainerConfig(image=TEST_IMAGE, tools_path=tools_dir, warm_pool=1, pids_limit=200)
    yield config
    asyncio.run(drain_warm_pool(config))


async def test_a_session_takes_a_ready_container_from_the_warm_pool(
    pooled_config: ContainerConfig, tmp_path: Path
) -> None:
    pooled = await ContainerExecutor.prewarm(pooled_config)
    assert len(pooled) == 1
    assert container_exists(pooled[0])
    executor = ContainerExecutor(pooled_config)
    async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
        assert executor.container_id == pooled[0]
        assert await run_ok(session, "tools.greet.hello()") == "world"


# -- TCP transport ---------------------------------------------------------------------------
async def test_the_tcp_transport_runs_code_and_tools(make_session: Callable[..., Session]) -> None:
    async with make_session(transport="tcp", network="bridge", auth_token=TOKEN) as session:
        assert await run_ok(session, "tools.greet.hello()") == "world"
        assert await run_ok(session, "artifacts.save('b', b'\\x00'); artifacts.load('b')") == (
            "b'\\x00'"
        )
        address = session.executor.tcp_address  # type: ignore[attr-defined]
        assert address is not None
        assert address[0] == "127.0.0.1"


async def test_a_tcp_worker_refuses_connections_without_the_token(tmp_path: Path) -> None:
    require_engine()
    config = ContainerConfig(
        image=TEST_IMAGE, transport="tcp", network="bridge", auth_token=TOKEN, warm_pool=1
    )
    try:
        (pooled,) = await ContainerExecutor.prewarm(config)
        client = docker_client()
        try:
            info = client.api.inspect_container(pooled)
        finally:
            client.close()
        port = int(info["NetworkSettings"]["Ports"]["8777/tcp"][0]["HostPort"])
        for wrong in (b"not-the-token-at-all", TOKEN.encode()[:-1] + b"?"):
            assert await asyncio.to_thread(attempt_handshake, port, wrong) is None
        executor = ContainerExecutor(config)
        async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
            assert executor.container_id == info["Id"]
            assert await run_ok(session, "6 * 7") == 42
    finally:
        await drain_warm_pool(config)


# -- runtime deps ----------------------------------------------------------------------------
async def test_runtime_deps_without_a_network_fail_with_advice(session: Session) -> None:
    result = await session.run("deps.add('six')")
    assert result.error_type == "DependencyError"
    assert result.error is not None
    assert "no network" in result.error
    assert "image" in result.error
    assert await run_ok(session, "deps.list()") == []


async def test_deps_scripts_do_not_import_modules_agent_code_planted_in_the_workdir(
    session: Session,
) -> None:
    """``deps`` runs its scripts with ``docker exec`` in the workdir agent code writes to; a
    planted ``json.py`` there must not run in them (it could forge listings or flood the
    host with output)."""
    plant = (
        "import os\n"
        "open(os.path.join(os.getcwd(), 'json.py'), 'w').write("
        "'import sys\\nsys.stdout.write(\"hijacked\")\\nraise SystemExit(3)\\n')"
    )
    assert (await session.run(plant)).error is None
    result = await session.run("deps.add('six')")
    assert result.error_type == "DependencyError"
    assert "hijacked" not in (result.error or "")
    assert "no network" in (result.error or "")


async def test_a_deps_script_flooding_its_output_leaves_only_a_bounded_tail_on_the_host(
    session: Session,
) -> None:
    """What a deps script prints is decided inside the container (a planted pip-venv
    python, thousands of planted dist-info dirs); the host keeps only the tail."""
    from py_code_mode.execution.container import packages

    flood = "import sys\nfor _ in range(24):\n    sys.stdout.write('x' * 2**20)\nprint('END')"
    command = ["python3", "-I", "-c", flood]
    code, text = await asyncio.to_thread(
        packages._exec_blocking, container_id_of(session), command, "root"
    )
    assert code == 0
    assert len(text.encode()) == packages._MAX_EXEC_OUTPUT
    assert text.endswith("END\n")


@pytest.mark.slow
async def test_runtime_deps_install_inside_the_container_with_a_network(
    make_session: Callable[..., Session],
) -> None:
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from this machine")
    bundle = ssl.get_default_verify_paths().openssl_cafile
    async with make_session(network="bridge", ca_bundle=bundle, install_timeout=300) as session:
        result = await session.run("deps.add('six==1.16.0')", timeout=300)
        assert result.is_ok, result.error
        assert await run_ok(session, "import six\nsix.__version__") == "1.16.0"
        assert await run_ok(session, "deps.remove('six')") is True
        check = await session.run("import importlib, sys\nsys.modules.pop('six', None)\nimport six")
        assert check.error_type in ("ModuleNotFoundError", "ImportError")


async def test_start_fails_when_required_deps_are_missing_and_there_is_no_network(
    make_session: Callable[..., Session],
) -> None:
    session = make_session(deps=("definitely-not-installed-pkg>=1",))
    with pytest.raises(DependencyError, match="no network"):
        await session.start()
    await session.close()
