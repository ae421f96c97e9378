"""The container executor on Docker engines reached by URL, over TLS, spread and failed over.

Two extra ``dockerd`` processes on this machine stand in for remote hosts: each has
its own data-root, exec-root and pidfile, listens only on ``tcp://127.0.0.1:<port>``
with TLS client certificates made for the test, and has the base image loaded with
``docker save | docker load``. Nothing here uses the first engine's socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode.errors import ConfigError, ExecutorError
from py_code_mode.execution import ContainerConfig, ContainerExecutor
from tests._tcp import free_port
from tests.execution._container_support import TEST_IMAGE, engine_problem
from tests.execution._remote_engine import RemoteEngine, available, new_engine

TOKEN = "t" * 20
_problem = engine_problem() or available()
pytestmark = pytest.mark.skipif(_problem is not None, reason=_problem or "")


def _start(root: Path) -> RemoteEngine:
    engine = new_engine(root)
    try:
        engine.start()
        engine.load_image(TEST_IMAGE)
    except Exception:
        engine.stop()
        raise
    return engine


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RemoteEngine]]:
    """Two TLS engines sharing one client certificate directory (one CA)."""
    first = _start(tmp_path_factory.mktemp("engine-a"))
    second = new_engine(tmp_path_factory.mktemp("engine-b"))
    # One CA for both, so one engine_cert_path serves both engines.
    second.certs = first.certs
    try:
        second.start()
        second.load_image(TEST_IMAGE)
        yield [first, second]
    finally:
        second.stop()
        first.stop()


def config(engines: list[RemoteEngine], **extra: Any) -> ContainerConfig:
    return ContainerConfig(
        image=TEST_IMAGE,
        engine=tuple(e.url for e in engines),
        engine_cert_path=engines[0].certs,
        **extra,
    )


def containers_on(engine: RemoteEngine) -> set[str]:
    return set(engine.docker("ps", "-q", "--no-trunc").split())


async def test_a_session_runs_on_a_tls_engine_with_tools_and_storage_on_the_host(
    engines: list[RemoteEngine], tmp_path: Path
) -> None:
    executor = ContainerExecutor(config(engines[:1]))
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        value = await session.run("x = 20\nx + 22")
        cid = executor.container_id
        saved = await session.run("artifacts.save('b.bin', bytes(range(256)) * 400)\n'ok'")
        loaded = await session.run("len(artifacts.load('b.bin'))")
        on_remote = containers_on(engines[0])
    assert value.value == 42
    assert saved.is_ok, saved.error
    assert loaded.value == 256 * 400
    assert cid in on_remote
    assert (tmp_path / "artifacts").is_dir()  # storage stayed on this host


async def test_sessions_spread_over_engines_by_running_containers(
    engines: list[RemoteEngine], tmp_path: Path
) -> None:
    first = ContainerExecutor(config(engines))
    second = ContainerExecutor(config(engines))
    async with (
        Session(storage=FileStorage(tmp_path), executor=first) as one,
        Session(storage=FileStorage(tmp_path), executor=second) as two,
    ):
        await one.run("1")
        await two.run("1")
        placed = [
            {i for i, e in enumerate(engines) if ex.container_id in containers_on(e)}
            for ex in (first, second)
        ]
    assert sorted(placed, key=sorted) == [{0}, {1}]


async def test_an_engine_that_does_not_answer_is_skipped(
    engines: list[RemoteEngine], tmp_path: Path
) -> None:
    dead = f"tcp://127.0.0.1:{free_port()}"
    settings = ContainerConfig(
        image=TEST_IMAGE, engine=(dead, engines[0].url), engine_cert_path=engines[0].certs
    )
    executor = ContainerExecutor(settings)
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        result = await session.run("'up'")
        placed = executor.container_id in containers_on(engines[0])
    assert result.value == "up"
    assert placed


async def test_no_usable_engine_names_each_engines_problem(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("not a certificate")
    dead = f"tcp://127.0.0.1:{free_port()}"
    executor = ContainerExecutor(
        ContainerConfig(image=TEST_IMAGE, engine=dead, engine_cert_path=certs)
    )
    with pytest.raises(ExecutorError, match=r"no Docker engine is usable .*127\.0\.0\.1"):
        await Session(storage=FileStorage(tmp_path), executor=executor).start()


async def test_every_engine_gets_its_own_warm_pool(
    engines: list[RemoteEngine], tmp_path: Path
) -> None:
    from py_code_mode.execution.container import drain_warm_pool

    settings = config(engines, warm_pool=1)
    try:
        ids = await ContainerExecutor.prewarm(settings)
        per_engine = [len(set(ids) & containers_on(e)) for e in engines]
    finally:
        await drain_warm_pool()
    assert per_engine == [1, 1]


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"engine": "tcp://127.0.0.1:2376"}, "needs engine_cert_path"),
        ({"engine": "http://host:2375"}, "not an engine URL"),
        ({"engine": ()}, "empty list"),
        ({"engine": ("unix:///a", "unix:///a")}, "twice"),
        ({"engine": "unix:///a", "engine_cert_path": Path("/nonexistent")}, "lacks ca.pem"),
        (
            {
                "engine": "unix:///a",
                "transport": "tcp",
                "network": "bridge",
                "auth_token": "x" * 16,
            },
            "cannot reach on a remote engine",
        ),
    ],
)
def test_bad_engine_settings_are_refused_with_the_reason(
    settings: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says):
        ContainerConfig(image=TEST_IMAGE, **settings)


async def test_a_session_whose_engine_dies_reports_it_and_restarts_on_another(
    tmp_path_factory: pytest.TempPathFactory, engines: list[RemoteEngine], tmp_path: Path
) -> None:
    doomed = new_engine(tmp_path_factory.mktemp("engine-doomed"))
    doomed.certs = engines[0].certs
    try:
        doomed.start()
        doomed.load_image(TEST_IMAGE)
        # The doomed engine is listed first and is empty: the session starts there.
        settings = ContainerConfig(
            image=TEST_IMAGE,
            engine=(doomed.url, engines[0].url),
            engine_cert_path=engines[0].certs,
            engine_retry=60.0,
        )
        executor = ContainerExecutor(settings)
        async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
            await session.run("artifacts.save('kept.txt', 'saved before the engine died')")
            await session.run("lost = 1")
            first_cid = executor.container_id
            assert first_cid in containers_on(doomed)
            running = asyncio.ensure_future(
                session.run("import time\ntime.sleep(30)\n'finished'", timeout=90)
            )
            await asyncio.sleep(1.5)
            doomed.kill()
            died = await asyncio.wait_for(running, 60)
            after = await session.run("lost", timeout=60)
            kept = await session.run("artifacts.load('kept.txt')")
            moved_to = executor.container_id
            on_survivor = containers_on(engines[0])
    finally:
        doomed.stop()
    assert died.error_type == "WorkerDied", died.error
    assert died.variables_lost
    assert "variables were lost" in (died.error or "")
    assert after.error_type == "NameError"
    assert kept.value == "saved before the engine died"
    assert moved_to in on_survivor


def test_the_cli_flags_reach_the_container_config(engines: list[RemoteEngine]) -> None:
    from py_code_mode.mcp_server.options import parse_args

    options = parse_args(
        ["--executor", "container", "--engine", engines[0].url, "--engine", engines[1].url,
         "--engine-certs", str(engines[0].certs)]
    )  # fmt: skip
    executor = options.make_executor()
    assert isinstance(executor, ContainerExecutor)
    assert executor.config.engine == (engines[0].url, engines[1].url)
    assert executor.config.engine_cert_path == engines[0].certs


def test_engine_flags_need_the_container_executor(tmp_path: Path) -> None:
    from py_code_mode.mcp_server.options import parse_args

    options = parse_args(["--base", str(tmp_path), "--executor", "in-process",
                          "--engine", "unix:///var/run/docker.sock"])  # fmt: skip
    with pytest.raises(ConfigError, match="need --executor container"):
        options.check()
