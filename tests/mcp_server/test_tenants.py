"""Tenants over streamable HTTP: tokens checked, storage kept apart, limits applied.

Every test drives a real server process through the official MCP client (and raw
HTTP where the client cannot express the attack).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import httpx
import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.mcp_server.tenants import Tenancy, TenantLimits, is_loopback
from tests._redis import redis_url as redis_url
from tests.mcp_server._support import call, http_server, http_session, run, text_of

IN_PROCESS = ("--executor", "in-process")
ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
GREET = textwrap.dedent(
    '''
    def run(name: str) -> str:
        """Greet someone."""
        return f"hello {name}"
    '''
)
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def tokens_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [defaults]
            max_sessions = 4
            {extra}

            [tenants.alice]
            token = "{ALICE}"

            [tenants.bob]
            token = "{BOB}"
            """
        )
    )
    return path


async def test_a_request_without_a_known_token_is_refused(base: Path, tmp_path: Path) -> None:
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens_file(tmp_path))) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            anonymous = await client.post(server.url, json=INIT, headers=ACCEPT)
            wrong = await client.post(
                server.url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {ALICE}x"}
            )
            right = await client.post(
                server.url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {ALICE}"}
            )
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert right.status_code == 200


async def test_tenants_never_see_each_others_workflows_or_artifacts(
    base: Path, tmp_path: Path
) -> None:
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens_file(tmp_path))) as server:
        async with http_session(server.url, ALICE) as alice, http_session(server.url, BOB) as bob:
            created = await call(alice, "create_workflow", name="greet", source=GREET)
            await run(alice, "artifacts.save('notes.txt', 'alice only')")
            bob_lists = await call(bob, "list_workflows")
            bob_invokes = await run(bob, "workflows.invoke('greet', name='bob')")
            bob_loads = await call(bob, "load_artifact", name="notes.txt")
            bob_artifacts = await run(bob, "artifacts.list()")
        async with http_session(server.url, ALICE) as alice_again:
            alice_invokes = await run(alice_again, "workflows.greet(name='alice')")
    assert not created.is_error, text_of(created)
    assert "greet" not in text_of(bob_lists)
    assert bob_invokes["error"] is not None
    assert bob_loads.is_error
    assert bob_artifacts["value"] == []
    assert alice_invokes["value"] == "hello alice"
    assert (base / "tenants" / "alice" / "workflows" / "greet.py").exists()
    assert not (base / "workflows" / "greet.py").exists()


async def test_one_tenant_cannot_use_a_session_id_another_tenant_opened(
    base: Path, tmp_path: Path
) -> None:
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens_file(tmp_path))) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            opened = await client.post(
                server.url, json=INIT, headers={**ACCEPT, "Authorization": f"Bearer {ALICE}"}
            )
            session_id = opened.headers["mcp-session-id"]
            listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
            hijack = await client.post(
                server.url,
                json=listing,
                headers={
                    **ACCEPT,
                    "Authorization": f"Bearer {BOB}",
                    "Mcp-Session-Id": session_id,
                    "Mcp-Protocol-Version": "2025-06-18",
                },
            )
    assert hijack.status_code == 404


async def test_tenants_on_one_redis_keep_to_their_own_prefix(
    base: Path, tmp_path: Path, redis_url: str
) -> None:
    prefix = f"tenants-{tmp_path.name}"[:60]
    args = (*IN_PROCESS, "--redis", redis_url, "--prefix", prefix)
    with http_server(base, *args, "--tokens", str(tokens_file(tmp_path))) as server:
        async with http_session(server.url, ALICE) as alice, http_session(server.url, BOB) as bob:
            await call(alice, "create_workflow", name="greet", source=GREET)
            bob_sees = await run(bob, "[w['name'] for w in workflows.list()]")
            alice_sees = await run(alice, "[w['name'] for w in workflows.list()]")
    import redis

    with redis.Redis.from_url(redis_url) as client:
        alice_keys = list(client.scan_iter(match=f"{prefix}.t.alice:*"))
        bob_workflows = client.hgetall(f"{prefix}.t.bob:workflows")
    assert alice_sees["value"] == ["greet"]
    assert bob_sees["value"] == []
    assert alice_keys
    assert bob_workflows == {}


async def test_a_tenant_over_its_session_limit_gets_a_clear_error(
    base: Path, tmp_path: Path
) -> None:
    tokens = tokens_file(tmp_path, "max_runs = 4")
    tokens.write_text(tokens.read_text().replace("max_sessions = 4", "max_sessions = 1"))
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens)) as server:
        async with (
            http_session(server.url, ALICE) as first,
            http_session(server.url, ALICE) as second,
            http_session(server.url, BOB) as other_tenant,
        ):
            ok = await run(first, "1 + 1")
            refused = await call(second, "run_code", code="1 + 1")
            bob_ok = await run(other_tenant, "2 + 2")
    assert ok["value"] == 2
    assert refused.is_error
    assert "max_sessions=1" in text_of(refused)
    assert bob_ok["value"] == 4


async def test_a_tenant_over_its_runs_in_flight_limit_is_refused_without_running(
    base: Path, tmp_path: Path
) -> None:
    tokens = tokens_file(tmp_path, "max_runs = 1")
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens)) as server:
        async with http_session(server.url, ALICE) as slow, http_session(server.url, ALICE) as fast:
            await run(fast, "ran = False")
            results: dict[str, object] = {}

            async def sleeper() -> None:
                results["slow"] = await run(slow, "import time; time.sleep(3); 'done'")

            async with anyio.create_task_group() as group:
                group.start_soon(sleeper)
                await anyio.sleep(1.0)
                results["fast"] = await call(fast, "run_code", code="ran = True")
            after = await run(fast, "ran")
    refused = results["fast"]
    assert getattr(refused, "is_error", False)
    assert "max_runs=1" in text_of(refused)  # type: ignore[arg-type]
    assert results["slow"]["value"] == "done"  # type: ignore[index]
    assert after["value"] is False


async def test_an_idle_session_loses_its_worker_and_the_next_run_says_so(
    base: Path, tmp_path: Path
) -> None:
    tokens = tokens_file(tmp_path, "idle_timeout = 1")
    with http_server(base, *IN_PROCESS, "--tokens", str(tokens)) as server:
        async with http_session(server.url, ALICE) as session:
            await run(session, "kept = 1")
            await anyio.sleep(3.0)
            expired = await call(session, "run_code", code="kept")
            fresh = await run(session, "kept")
    assert expired.is_error
    assert "variables are lost" in text_of(expired)
    assert fresh["error_type"] == "NameError"


async def test_a_single_token_from_the_environment_uses_the_configured_storage(
    base: Path,
) -> None:
    with http_server(base, *IN_PROCESS, env={"PY_CODE_MODE_TOKEN": ALICE}) as server:
        async with http_session(server.url, ALICE) as session:
            await call(session, "create_workflow", name="greet", source=GREET)
        async with httpx.AsyncClient(timeout=30) as client:
            anonymous = await client.post(server.url, json=INIT, headers=ACCEPT)
    assert anonymous.status_code == 401
    assert (base / "workflows" / "greet.py").exists()


def test_a_token_file_with_a_short_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[tenants.alice]\ntoken = "short"\n')
    with pytest.raises(ConfigError, match=r"tenants\.alice: a bearer token needs at least 16"):
        Tenancy.from_file(path, TenantLimits())


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("not toml [", "not valid TOML"),
        ("[tenants]\n", "tenants"),
        (f'[tenants.Alice]\ntoken = "{ALICE}"\n', "tenant name"),
        (f'[tenants."alice\\n"]\ntoken = "{ALICE}"\n', "tenant name"),
        (f'[tenants."../alice"]\ntoken = "{ALICE}"\n', "tenant name"),
        (f'[tenants.a]\ntoken = "{ALICE}"\ntoken_env = "X"\n', "exactly one of token"),
        (f'[tenants.a]\ntoken = "{ALICE}"\n[tenants.b]\ntoken = "{ALICE}"\n', "share one token"),
        (f'[tenants.a]\ntoken = "{ALICE}"\nmax_runs = 0\n', "max_runs"),
        ('[tenants.a]\ntoken_env = "PY_CODE_MODE_TEST_UNSET_VAR"\n', "is unset"),
    ],
)
def test_a_bad_token_file_names_the_problem(tmp_path: Path, body: str, says: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=says):
        Tenancy.from_file(path, TenantLimits())


async def test_the_token_check_finds_each_tenant_and_nothing_else() -> None:
    tenancy = Tenancy.single(ALICE, TenantLimits())
    found = await tenancy.verify_token(ALICE)
    assert found is not None
    assert found.client_id == "default"
    assert ALICE not in found.model_dump_json()
    assert await tenancy.verify_token(ALICE[:-1]) is None
    assert await tenancy.verify_token("") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("10.0.0.1", False), ("example.org", False)],
)  # fmt: skip
def test_only_loopback_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_doctor_states_the_http_access_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from py_code_mode.cli.doctor import check_http_access

    monkeypatch.delenv("PY_CODE_MODE_TOKEN", raising=False)
    monkeypatch.delenv("PY_CODE_MODE_TOKENS", raising=False)
    refused = check_http_access()
    monkeypatch.setenv("PY_CODE_MODE_TOKENS", str(tokens_file(tmp_path)))
    with_file = check_http_access()
    assert refused.status == "warn"
    assert "needs authentication" in refused.detail
    assert with_file.status == "ok"
    assert "tenants: alice (4 sessions" in with_file.detail
    assert ALICE not in with_file.detail


def test_the_startup_log_states_the_access_mode(base: Path, tmp_path: Path) -> None:
    import subprocess

    from tests.mcp_server._support import SERVER, free_port, read_line, server_env, stop

    port = free_port()
    args = ["--base", str(base), *IN_PROCESS, "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(
        [*SERVER, *args, "--tokens", str(tokens_file(tmp_path))],
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=server_env(),
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        while len(lines) < 20 and not any("access:" in line for line in lines):
            lines.append(read_line(process.stderr, timeout=30).decode())
    finally:
        stop(process)
    said = next(line for line in lines if "access:" in line)
    assert "bearer tokens from" in said
    assert "alice (4 sessions" in said
    assert ALICE not in "".join(lines)


async def test_an_idle_session_is_reaped_only_when_not_running(tmp_path: Path) -> None:
    from py_code_mode import Session
    from py_code_mode.execution import InProcessExecutor
    from py_code_mode.mcp_server.sessions import SessionExpiredError, SessionPool
    from py_code_mode.storage.file import FileStorage

    pool = SessionPool(
        lambda: Session(storage=FileStorage(tmp_path), executor=InProcessExecutor()),
        per_connection=True,
        limits=TenantLimits(max_sessions=2, idle_timeout=5.0, max_runs=2),
    )
    session, lock = await pool.get(None)
    async with lock:
        busy = pool.reap_idle(now=10**9)  # a running session is never idle
    idle = pool.reap_idle(now=10**9)
    with pytest.raises(SessionExpiredError, match="idle for more than 5 s"):
        await pool.get(None)
    fresh, _ = await pool.get(None)
    await pool.aclose()
    assert busy == []
    assert len(idle) == 1
    assert fresh is not session
    assert session.closed


@pytest.mark.parametrize(
    "token",
    [
        "\udcff" * 20,  # what os.environ holds for bytes that are not UTF-8
        "alice token with spaces 0123",
        "alice-token-0123456789\nInjected: 1",
        "alice-tök-0123456789abcdef",
    ],
)
def test_a_token_outside_the_bearer_alphabet_is_refused_with_the_fix(token: str) -> None:
    with pytest.raises(ConfigError, match=r"RFC 6750.*secrets\.token_urlsafe"):
        Tenancy.single(token, TenantLimits())


def test_a_server_whose_token_variable_is_not_utf8_exits_with_the_reason(base: Path) -> None:
    """Attack: the environment carries raw bytes; startup says why instead of a traceback."""
    import os
    import subprocess

    from tests.mcp_server._support import SERVER, free_port, server_env

    env = {os.fsencode(k): os.fsencode(v) for k, v in server_env().items()}
    env[b"PY_CODE_MODE_TOKEN"] = b"\xff\xfe" * 12
    args = ["--base", str(base), *IN_PROCESS, "--transport", "http", "--port", str(free_port())]
    done = subprocess.run(
        [*SERVER, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    said = done.stderr.decode(errors="replace")
    assert done.returncode != 0
    assert "PY_CODE_MODE_TOKEN" in said
    assert "RFC 6750" in said
    assert "Traceback" not in said
