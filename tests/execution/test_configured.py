"""The rules every executor config shares: each mistake is one ConfigError line naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ConfigError
from py_code_mode.execution import (
    ContainerConfig,
    ContainerExecutor,
    InProcessConfig,
    InProcessExecutor,
    SubprocessConfig,
    SubprocessExecutor,
)

CONFIGS = [InProcessConfig, SubprocessConfig, ContainerConfig]


@pytest.fixture(params=CONFIGS, ids=lambda cls: cls.__name__)
def config_type(request: pytest.FixtureRequest) -> type[Any]:
    """Each executor config in turn."""
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"timeout": -1}, "timeout: Input should be greater than 0, got -1"),
        ({"interrupt_grace": float("nan")}, "interrupt_grace: Input should be a finite number"),
        ({"timeout": "60"}, "timeout: Input should be a valid number, got '60'"),
        ({"timeout": True}, "timeout: Input should be a valid number, got True"),
        ({"output_limit": 0}, "output_limit: Input should be greater than or equal to 1, got 0"),
        ({"output_limit": 1.5}, "output_limit: Input should be a valid integer, got 1.5"),
        ({"allow_runtime_deps": "yes"}, "allow_runtime_deps: Input should be a valid boolean"),
        ({"tools_path": 3}, "tools_path: Input should be a path (str or pathlib.Path), got 3"),
        ({"deps": "pandas"}, "deps: Input should be a list of strings, got 'pandas'"),
        ({"deps": ["six", "--index-url=http://evil"]}, "deps[1]: package spec '--index-url"),
        ({"tool_path": "tools"}, "tool_path: no such setting"),
    ],
)
def test_a_bad_shared_setting_is_one_line_naming_the_config_and_the_field(
    config_type: type[Any], settings: dict[str, Any], line: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_type(**settings)
    assert str(caught.value).startswith(f"{config_type.__name__}.{line}")
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_every_mistake_gets_its_own_line(config_type: type[Any]) -> None:
    with pytest.raises(ConfigError) as caught:
        config_type(timeout=0, output_limit=-5, allow_runtime_deps=None)
    lines = str(caught.value).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        f"{config_type.__name__}.{name}"
        for name in ("allow_runtime_deps", "timeout", "output_limit")
    ]


def test_paths_accept_strings_and_expand_the_home_directory(config_type: type[Any]) -> None:
    config = config_type(tools_path="~/tools")
    assert config.tools_path == Path.home() / "tools"


def test_a_deps_file_is_read_after_deps_and_its_bad_line_is_named(
    config_type: type[Any], tmp_path: Path
) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("# comment\nsix>=1.10\n\nattrs\nsix\n")
    config = config_type(deps=("six",), deps_file=req)
    assert config.validated_deps == ["six", "six>=1.10", "attrs"]
    req.write_text("six\n--extra-index-url http://evil\n")
    with pytest.raises(ConfigError, match=r"deps_file: .*requirements\.txt, line 2"):
        config_type(deps_file=req)


def test_a_missing_deps_file_is_ignored(config_type: type[Any], tmp_path: Path) -> None:
    assert config_type(deps_file=tmp_path / "absent.txt").validated_deps == []


def test_default_timeout_is_a_deprecated_name_of_timeout(config_type: type[Any]) -> None:
    with pytest.warns(DeprecationWarning, match="use timeout="):
        config = config_type(default_timeout=7.0)
    assert config.timeout == 7.0
    with pytest.raises(ConfigError, match="give only timeout"):
        config_type(timeout=5.0, default_timeout=10.0)


def test_a_config_is_frozen(config_type: type[Any]) -> None:
    config = config_type(timeout=5.0)
    with pytest.raises(ValueError, match="frozen"):
        config.timeout = 6.0
    assert config.timeout == 5.0


@pytest.mark.parametrize(
    ("executor_type", "config_type"),
    [
        (InProcessExecutor, InProcessConfig),
        (SubprocessExecutor, SubprocessConfig),
        (ContainerExecutor, ContainerConfig),
    ],
)
def test_an_executor_refuses_another_executors_config(
    executor_type: type[Any], config_type: type[Any]
) -> None:
    other = next(cls for cls in CONFIGS if cls is not config_type)
    with pytest.raises(ConfigError, match=f"expects an? {config_type.__name__}, got"):
        executor_type(other())
