"""Server flags: defaults, validation, and the sessions they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.mcp_server.options import (
    DEFAULT_TIMEOUT,
    ServerOptions,
    default_executor,
    executor_available,
    parse_args,
)
from py_code_mode.storage.file import FileStorage


def test_the_base_defaults_to_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PY_CODE_MODE_BASE", str(tmp_path / "lib"))
    options = parse_args([])
    assert options.base == tmp_path / "lib"
    assert options.transport == "stdio"
    assert options.timeout == DEFAULT_TIMEOUT
    assert options.allow_runtime_deps is True


def test_without_the_environment_variable_the_base_is_in_the_home_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PY_CODE_MODE_BASE", raising=False)
    assert parse_args([]).base == Path("~/.code-mode").expanduser()


def test_the_default_executor_is_subprocess_when_it_is_installed() -> None:
    expected = "subprocess" if executor_available("subprocess") else "in-process"
    assert default_executor() == expected
    assert parse_args([]).executor_kind == expected


def test_flags_are_parsed(tmp_path: Path) -> None:
    options = parse_args(
        [
            "--base",
            str(tmp_path),
            "--executor",
            "in-process",
            "--timeout",
            "0",
            "--no-runtime-deps",
            "--transport",
            "http",
            "--port",
            "9000",
            "--log-level",
            "info",
        ]
    )
    assert options.executor_kind == "in-process"
    assert options.timeout is None
    assert options.allow_runtime_deps is False
    assert (options.transport, options.port, options.log_level) == ("http", 9000, "INFO")


def test_tools_default_to_the_tools_folder_of_the_base_only_when_it_exists(tmp_path: Path) -> None:
    options = ServerOptions(base=tmp_path)
    assert options.tools_path is None
    (tmp_path / "tools").mkdir()
    assert options.tools_path == tmp_path / "tools"
    assert ServerOptions(base=tmp_path, tools=tmp_path / "x").tools_path == tmp_path / "x"


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"timeout": -1.0}, "--timeout"),
        ({"timeout": float("nan")}, "--timeout"),
        ({"port": 70_000}, "--port"),
        ({"tools": Path("/nonexistent/tools")}, "--tools"),
        ({"redis": "localhost:6379"}, "--redis"),
        ({"executor": "cloud"}, "--executor"),
    ],
)
def test_bad_values_are_rejected_naming_the_flag(
    tmp_path: Path, changes: dict[str, object], flag: str
) -> None:
    options = ServerOptions(base=tmp_path, executor="in-process")
    options = ServerOptions(**{**options.__dict__, **changes})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=flag):
        options.check()


def test_check_creates_a_missing_base_directory(tmp_path: Path) -> None:
    base = tmp_path / "a" / "b"
    ServerOptions(base=base, executor="in-process").check()
    assert base.is_dir()


def test_a_base_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--base"):
        ServerOptions(base=tmp_path / "file", executor="in-process").check()


async def test_sessions_use_file_storage_in_the_storage_directory(tmp_path: Path) -> None:
    options = ServerOptions(
        base=tmp_path / "base", storage=tmp_path / "store", executor="in-process"
    )
    session = options.make_session()
    assert isinstance(session.storage, FileStorage)
    assert session.storage.base_path == tmp_path / "store"
    async with session:
        await session.add_workflow("one", "def run():\n    return 1\n")
    assert (tmp_path / "store" / "workflows" / "one.py").is_file()


def test_no_runtime_deps_reaches_the_executor(tmp_path: Path) -> None:
    options = ServerOptions(base=tmp_path, executor="in-process", allow_runtime_deps=False)
    assert options.make_executor().allow_runtime_deps is False


def test_the_container_image_comes_from_the_flag_else_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PY_CODE_MODE_IMAGE", "from-env:1")
    assert parse_args(["--base", str(tmp_path)]).image == "from-env:1"
    options = parse_args(["--base", str(tmp_path), "--image", "flag:2", "--executor", "container"])
    assert options.image == "flag:2"
    pytest.importorskip("docker")
    executor = options.make_executor()
    assert executor.config.image == "flag:2"  # type: ignore[attr-defined]


def test_allow_host_flags_give_the_sandbox_an_allowlist(tmp_path: Path) -> None:
    hosts = ["--allow-host", "pypi.org", "--allow-host", "*.example.com"]
    options = parse_args(["--base", str(tmp_path), "--executor", "subprocess", *hosts])
    assert options.allow_hosts == ("pypi.org", "*.example.com")
    config = options.make_executor().config  # type: ignore[attr-defined]
    assert config.network == "allowlist"
    assert config.allow == ("pypi.org", "*.example.com")


def test_allow_host_without_a_sandbox_is_refused(tmp_path: Path) -> None:
    options = ServerOptions(base=tmp_path, executor="in-process", allow_hosts=("pypi.org",))
    with pytest.raises(ConfigError, match="--allow-host needs a sandbox"):
        options.check()
