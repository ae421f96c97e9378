"""SubprocessConfig: its own rules, and the constructor calls the docs show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ConfigError
from py_code_mode.execution import SubprocessConfig


def test_the_documented_constructor_call_works() -> None:
    config = SubprocessConfig(tools_path=Path("./tools"))
    assert config.tools_path == Path("tools")
    assert config.memory_limit == 4 << 30
    assert config.timeout is None


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"python_version": "2.7"}, "python_version: '2.7' is too old"),
        ({"python_version": "three"}, "python_version: must look like '3.12'"),
        ({"python_version": 3.12}, "python_version: must be a version such as '3.12'"),
        ({"memory_limit": "32m"}, "memory_limit: must be at least 64 MiB, got '32m'"),
        ({"memory_limit": "lots"}, "memory_limit: must be a size such as '512m'"),
        ({"memory_limit": True}, "memory_limit: Input should be a valid integer, got True"),
        ({"max_processes": -1}, "max_processes: Input should be greater than or equal to 1"),
        ({"max_open_files": 4}, "max_open_files: Input should be greater than or equal to 32"),
        ({"max_file_size_mb": 1.5}, "max_file_size_mb: Input should be a valid integer"),
        ({"startup_timeout": 0}, "startup_timeout: Input should be greater than 0"),
        ({"cache_venv": "yes"}, "cache_venv: Input should be a valid boolean"),
        ({"venv_path": 42}, "venv_path: Input should be a path"),
        ({"env": ["A"]}, "env: Input should be a valid dictionary"),
        ({"env": {"BAD NAME": "x"}}, "env['BAD NAME']: 'BAD NAME' is not a valid environment"),
        ({"env": {"OK": 1}}, "env['OK']: Input should be a valid string, got 1"),
        ({"env": {"OK": "a\0b"}}, "env['OK']: a value must not contain NUL characters"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(settings: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SubprocessConfig(**settings)
    assert str(caught.value).startswith(f"SubprocessConfig.{line}")


def test_a_python_path_is_accepted_and_checked_only_at_start() -> None:
    assert SubprocessConfig(python_version="/opt/python/bin/python3").python_version


def test_memory_limit_takes_sizes_in_binary_units() -> None:
    assert SubprocessConfig(memory_limit="512m").memory_limit == 512 << 20
    assert SubprocessConfig(memory_limit="1.5g").memory_limit == 3 << 29
    assert SubprocessConfig(memory_limit=None).memory_limit is None


def test_memory_limit_mb_is_a_deprecated_name_of_memory_limit_in_mib() -> None:
    with pytest.warns(DeprecationWarning, match="use memory_limit="):
        assert SubprocessConfig(memory_limit_mb=512).memory_limit == 512 << 20
    with (
        pytest.warns(DeprecationWarning, match="memory_limit_mb"),
        pytest.raises(ConfigError, match="at least 64 MiB"),
    ):
        SubprocessConfig(memory_limit_mb=16)


def test_env_values_of_none_mean_copy_from_the_host() -> None:
    assert SubprocessConfig(env={"A": "1", "HOME": None}).env == {"A": "1", "HOME": None}
