"""ContainerConfig: its own rules, and the constructor calls the docs show."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import ConfigError
from py_code_mode.execution import ContainerConfig

TOKEN = secrets.token_urlsafe(24)


def test_the_documented_constructor_calls_work(tmp_path: Path) -> None:
    config = ContainerConfig(
        tools_path=tmp_path, auth_token=TOKEN, timeout=60.0, allow_runtime_deps=False
    )
    assert (config.tools_path, config.timeout, config.allow_runtime_deps) == (tmp_path, 60.0, False)
    assert ContainerConfig(image="python:3.12-slim").image == "python:3.12-slim"
    assert ContainerConfig(memory_limit="1g", cpu_limit=1.0, pids_limit=256).memory_limit == 1 << 30


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"network": "host"}, "network: 'host' would share another network stack"),
        ({"network": "container:abc"}, "network: 'container:abc' would share another"),
        ({"auth_token": "short"}, "auth_token: must be at least 16 characters"),
        ({"memory_limit": "lots"}, "memory_limit: must be a size such as '512m'"),
        ({"memory_limit": "1m"}, "memory_limit: must be at least 64 MiB, got '1m'"),
        ({"workdir_size": 0}, "workdir_size: must be at least 16 MiB, got 0"),
        ({"pids_limit": 2}, "pids_limit: Input should be greater than or equal to 8, got 2"),
        ({"cpu_limit": -1}, "cpu_limit: Input should be greater than 0, got -1"),
        ({"transport": "udp"}, "transport: Input should be 'stdio' or 'tcp', got 'udp'"),
        ({"warm_pool": 1000}, "warm_pool: Input should be less than or equal to 32, got 1000"),
        ({"tcp_port": 70000}, "tcp_port: Input should be less than or equal to 65535"),
        ({"image": ""}, "image: must be a non-empty string without spaces, got ''"),
        ({"user": "a b"}, "user: must be a non-empty string without spaces"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, "ca_bundle: /nonexistent/ca.pem is not a file"),
        ({"env": {"BAD NAME": "x"}}, "env['BAD NAME']: 'BAD NAME' is not a valid environment"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_field(settings: dict[str, Any], line: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ContainerConfig(**settings)
    assert str(caught.value).startswith(f"ContainerConfig.{line}")


def test_tcp_needs_a_token_unless_explicitly_unauthenticated() -> None:
    with pytest.raises(ConfigError, match="transport='tcp' needs an auth_token"):
        ContainerConfig(transport="tcp", network="bridge")
    config = ContainerConfig(transport="tcp", network="bridge", allow_unauthenticated=True)
    assert config.auth_token is None


def test_tcp_needs_a_network() -> None:
    with pytest.raises(ConfigError, match="transport='tcp' needs a network"):
        ContainerConfig(transport="tcp", auth_token=TOKEN)


def test_the_token_never_shows_in_the_config_repr() -> None:
    config = ContainerConfig(transport="tcp", network="bridge", auth_token=TOKEN)
    assert TOKEN not in repr(config)


def test_sizes_are_docker_style_binary_units() -> None:
    config = ContainerConfig(memory_limit="2g", workdir_size="64m")
    assert (config.memory_limit, config.workdir_size) == (2 << 30, 64 << 20)
    assert ContainerConfig(memory_limit=None).memory_limit is None


def test_environment_is_a_deprecated_name_of_env() -> None:
    with pytest.warns(DeprecationWarning, match="use env="):
        config = ContainerConfig(environment={"GREETING": "hi"})
    assert config.env == {"GREETING": "hi"}
    with pytest.raises(ConfigError, match="give only env"):
        ContainerConfig(environment={"A": "1"}, env={"A": "2"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"network": "allowlist"}, "needs the hosts to allow"),
        ({"network": "bridge", "allow": ["pypi.org"]}, "only apply to network='allowlist'"),
        ({"network": "allowlist", "allow": ["x"], "warm_pool": 1}, "warm_pool=0"),
        (
            {"network": "allowlist", "allow": ["x"], "engine": "ssh://u@h"},
            "remote engine cannot mount",
        ),
        (
            {"network": "allowlist", "allow": ["x"], "transport": "tcp", "auth_token": "x" * 16},
            "transport='tcp' needs a network",
        ),
    ],
)
def test_bad_egress_settings_are_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ContainerConfig(**settings)  # type: ignore[arg-type]
