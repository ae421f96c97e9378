"""The files of ``deploy/`` are consistent with the server they start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from py_code_mode.mcp_server.options import parse_args
from py_code_mode.mcp_server.tenants import Tenancy, TenantLimits
from tests._replicas import HAPROXY_CONFIG, MISSING_HAPROXY, haproxy_binary

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_compose_replicas_start_with_flags_the_server_accepts() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "replica1", "replica2", "haproxy"} <= set(services)
    for name in ("replica1", "replica2"):
        options = parse_args(services[name]["command"])
        assert options.transport == "http"
        assert options.redis == "redis://redis:6379/0"
        assert options.tokens == Path("/run/secrets/tokens")
        assert not options.no_auth
    env = services["haproxy"]["environment"]
    assert env["REPLICA1"] == "replica1:8765"
    assert env["REPLICA2"] == "replica2:8765"
    assert (DEPLOY / compose["secrets"]["tokens"]["file"]).name == "tokens.toml"


def test_the_example_token_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAM_B_TOKEN", "team-b-token-0123456789")
    tenancy = Tenancy.from_file(DEPLOY / "tokens.example.toml", TenantLimits())
    assert [t.name for t in tenancy.tenants] == ["team-a", "team-b"]
    assert tenancy.tenants[1].limits.max_sessions == 2


@pytest.mark.skipif(haproxy_binary() is None, reason=MISSING_HAPROXY)
def test_haproxy_accepts_the_config_with_the_compose_environment() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env = {**os.environ, **compose["services"]["haproxy"]["environment"]}
    done = subprocess.run(
        [str(haproxy_binary()), "-c", "-f", str(HAPROXY_CONFIG)],
        env={**env, "REPLICA1": "127.0.0.1:1", "REPLICA2": "127.0.0.1:2"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr
