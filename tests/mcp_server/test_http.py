"""End-to-end over streamable HTTP: each client its own variables, one shared library."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import anyio
import pytest

from tests.mcp_server._support import (
    SERVER,
    SUBPROCESS_ONLY,
    call,
    http_server,
    http_session,
    process_alive,
    run,
    server_env,
    text_of,
    wait_gone,
)

IN_PROCESS = ("--executor", "in-process")


async def test_an_http_client_lists_tools_and_keeps_variables(base: Path) -> None:
    with http_server(base, *IN_PROCESS) as server:
        async with http_session(server.url) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            await run(session, "total = 40")
            result = await run(session, "total + 2")
    assert {"run_code", "create_workflow", "load_artifact"} <= names
    assert result["value"] == 42


async def test_two_clients_do_not_see_each_others_variables_but_share_workflows(
    base: Path,
) -> None:
    source = textwrap.dedent(
        '''
        def run(name: str) -> str:
            """Greet someone."""
            return f"hello {name}"
        '''
    )
    with http_server(base, *IN_PROCESS) as server:
        async with http_session(server.url) as alice, http_session(server.url) as bob:
            await run(alice, "secret = 'alice only'")
            await run(bob, "secret = 'bob only'")
            created = await call(alice, "create_workflow", name="greet", source=source)
            alice_sees = await run(alice, "secret")
            bob_sees = await run(bob, "secret")
            bob_invokes = await run(bob, "workflows.greet(name='bob')")
            await run(alice, "artifacts.save('shared.txt', 'from alice')")
            bob_loads = await call(bob, "load_artifact", name="shared.txt")
    assert not created.is_error, text_of(created)
    assert alice_sees["value"] == "alice only"
    assert bob_sees["value"] == "bob only"
    assert bob_invokes["value"] == "hello bob"
    assert (bob_loads.structured_content or {})["data"] == "from alice"


async def test_a_new_client_starts_with_a_fresh_session(base: Path) -> None:
    with http_server(base, *IN_PROCESS) as server:
        async with http_session(server.url) as first:
            await run(first, "leftover = 1")
        async with http_session(server.url) as second:
            result = await run(second, "leftover")
    assert result["error_type"] == "NameError"


async def test_errors_over_http_are_results_or_tool_errors_and_serving_continues(
    base: Path,
) -> None:
    with http_server(base, *IN_PROCESS) as server:
        async with http_session(server.url) as session:
            failed = await run(session, "1 / 0")
            bad = await call(session, "get_workflow", name="absent")
            ok = await run(session, "'fine'")
        assert server.process.poll() is None
    assert failed["error_type"] == "ZeroDivisionError"
    assert bad.is_error
    assert ok["value"] == "fine"


@SUBPROCESS_ONLY
async def test_a_disconnected_client_loses_its_worker_and_shutdown_stops_the_rest(
    base: Path,
) -> None:
    # Host pids: unjailed (the jailed lifecycle is in tests/security/test_lifecycle.py).
    with http_server(base, "--executor", "subprocess", "--isolation", "none") as server:
        async with http_session(server.url) as staying:
            async with http_session(server.url) as leaving:
                gone = (await run(leaving, "import os\nos.getpid()"))["value"]
            kept = (await run(staying, "import os\nos.getpid()"))["value"]
            with anyio.fail_after(30):
                while process_alive(gone):
                    await anyio.sleep(0.05)
            assert process_alive(kept)
    assert wait_gone(kept), "a worker outlived the HTTP server"


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ((), "needs authentication"),
        (("--host", "0.0.0.0", "--no-auth"), "loopback host only"),
    ],
)
def test_http_without_authentication_refuses_to_start_unless_no_auth_on_loopback(
    base: Path, extra: tuple[str, ...], says: str
) -> None:
    done = subprocess.run(
        [*SERVER, "--base", str(base), *IN_PROCESS, "--transport", "http", *extra],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=server_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert says in done.stderr
