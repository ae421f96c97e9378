"""The bubblewrap jail module: the argv it builds, the probe, refusing to run unjailed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode._private import jail
from py_code_mode.errors import ConfigError, ExecutorError
from py_code_mode.execution import ContainerConfig, SubprocessConfig, SubprocessExecutor
from py_code_mode.mcp_server.options import parse_args


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PY_CODE_MODE_BWRAP", "/nonexistent/bwrap")
    jail.probe.cache_clear()
    yield
    monkeypatch.delenv("PY_CODE_MODE_BWRAP")
    jail.probe.cache_clear()


def test_the_argv_unshares_everything_and_shows_only_what_the_spec_binds(tmp_path: Path) -> None:
    spec = jail.JailSpec(
        read_only=(tmp_path,), env={"A": "1"}, cwd=Path("/work"), tmpfs=(Path("/work"),)
    )
    argv = jail.jail_argv("/usr/bin/bwrap", spec, ["python3", "-c", "1"])
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534"
    assert "--share-net" not in argv
    assert ["--ro-bind", str(tmp_path), str(tmp_path)] == argv[
        argv.index(str(tmp_path)) - 1 : argv.index(str(tmp_path)) + 2
    ]
    assert "--clearenv" in argv
    assert argv[argv.index("--setenv") + 1 : argv.index("--setenv") + 3] == ["A", "1"]
    assert argv[-3:] == ["python3", "-c", "1"]
    assert str(Path.home()) not in argv
    assert not any("docker.sock" in a for a in argv)
    # the private tmpfs is mounted before the binds, so binds under /tmp stay visible
    assert argv.index("/tmp") < argv.index(str(tmp_path))


def test_network_is_shared_only_when_asked() -> None:
    argv = jail.jail_argv("/usr/bin/bwrap", jail.JailSpec(network=True), ["true"])
    assert "--share-net" in argv


@pytest.mark.usefixtures("no_bwrap")
def test_a_missing_bwrap_is_reported_with_the_install_line() -> None:
    found = jail.probe()
    assert not found.usable
    assert "apt-get install -y bubblewrap" in found.detail
    with pytest.raises(jail.JailUnavailableError, match="isolation"):
        jail.require_jail("The thing", "pass isolation='none'")


@pytest.mark.usefixtures("no_bwrap")
async def test_the_subprocess_executor_refuses_to_start_unjailed(tmp_path: Path) -> None:
    executor = SubprocessExecutor(SubprocessConfig(isolation="bwrap"))
    session = Session(storage=FileStorage(tmp_path), executor=executor)
    with pytest.raises(ExecutorError, match=r"bubblewrap.*isolation=\"none\""):
        await session.start()
    await session.close()


@pytest.mark.usefixtures("no_bwrap")
async def test_opting_out_explicitly_runs_without_the_jail(tmp_path: Path) -> None:
    executor = SubprocessExecutor(SubprocessConfig(isolation="none"))
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        assert executor.isolation == "none"
        result = await session.run("import os\nos.getuid()")
        assert result.value == os.getuid()


def test_an_unknown_isolation_is_refused() -> None:
    with pytest.raises(ConfigError, match="isolation"):
        SubprocessConfig(isolation="chroot")
    with pytest.raises(ConfigError, match="runtime"):
        ContainerConfig(runtime="run sc")


def test_the_server_flags_reach_the_executor_configs(tmp_path: Path) -> None:
    options = parse_args(["--base", str(tmp_path), "--isolation", "none"])
    executor = options.make_executor()
    assert isinstance(executor, SubprocessExecutor)
    assert executor.config.isolation == "none"
    options = parse_args(["--base", str(tmp_path), "--executor", "container", "--runtime", "runsc"])
    assert options.make_executor().config.runtime == "runsc"  # type: ignore[attr-defined]
