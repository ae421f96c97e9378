"""Two HTTP replicas on one Redis behind the real haproxy of ``deploy/haproxy.cfg``.

haproxy keeps each MCP session on the replica that opened it (stick table on the
``Mcp-Session-Id`` header); the library lives in Redis, so any replica serves it.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests._redis import redis_url as redis_url
from tests._replicas import MISSING_HAPROXY, Balancer, haproxy, haproxy_binary
from tests.mcp_server._support import HttpServer, call, http_server, http_session, run, text_of

pytestmark = pytest.mark.skipif(haproxy_binary() is None, reason=MISSING_HAPROXY)

TOKEN = "replica-token-0123456789abcdef"
GREET = textwrap.dedent(
    '''
    def run(name: str) -> str:
        """Greet someone."""
        return f"hello {name}"
    '''
)


@contextlib.contextmanager
def replicas(
    base: Path, tmp_path: Path, redis_url: str
) -> Iterator[tuple[Balancer, list[HttpServer]]]:
    prefix = f"replicas-{tmp_path.name}"[:60]
    args = ("--executor", "in-process", "--redis", redis_url, "--prefix", prefix)
    env = {"PY_CODE_MODE_TOKEN": TOKEN}
    with (
        http_server(base, *args, env=env) as first,
        http_server(base, *args, env=env) as second,
    ):
        ports = [int(s.url.rsplit(":", 1)[1].split("/")[0]) for s in (first, second)]
        with haproxy(ports, tmp_path / "haproxy") as balancer:
            yield balancer, [first, second]


async def pid_of(session: object) -> int:
    # In-process executor: the run happens inside the replica's own process.
    result = await run(session, "import os; os.getpid()")  # type: ignore[arg-type]
    return int(result["value"])


async def test_a_workflow_created_through_one_replica_runs_through_the_other(
    base: Path, tmp_path: Path, redis_url: str
) -> None:
    with replicas(base, tmp_path, redis_url) as (balancer, servers):
        async with (
            http_session(balancer.url, TOKEN) as one,
            http_session(balancer.url, TOKEN) as two,
        ):
            pids = {await pid_of(one), await pid_of(two)}
            created = await call(one, "create_workflow", name="greet", source=GREET)
            await run(one, "artifacts.save('shared.txt', 'made on one replica')")
            invoked = await run(two, "workflows.greet(name='two')")
            loaded = await call(two, "load_artifact", name="shared.txt")
            await run(one, "mine = 1")
            stays = [await pid_of(one) for _ in range(5)]
            kept = await run(one, "mine")
    assert pids == {s.process.pid for s in servers}, "the two sessions share one replica"
    assert not created.is_error, text_of(created)
    assert invoked["value"] == "hello two"
    assert (loaded.structured_content or {})["data"] == "made on one replica"
    assert len(set(stays)) == 1
    assert kept["value"] == 1


async def test_killing_a_replica_loses_only_its_sessions_variables(
    base: Path, tmp_path: Path, redis_url: str
) -> None:
    with replicas(base, tmp_path, redis_url) as (balancer, servers):
        by_pid = {s.process.pid: s for s in servers}
        async with http_session(balancer.url, TOKEN) as survivor:
            await run(survivor, "survives = 'yes'")
            await call(survivor, "create_workflow", name="greet", source=GREET)
            async with http_session(balancer.url, TOKEN) as doomed:
                await run(doomed, "artifacts.save('before.txt', 'saved before the crash')")
                await run(doomed, "lost = 'gone with the replica'")
                victim = by_pid[await pid_of(doomed)]
                assert victim.process.pid != await pid_of(survivor)
                victim.process.kill()
                victim.process.wait(10)
                with anyio.fail_after(60):
                    try:
                        failed = await call(doomed, "run_code", code="lost")
                        error = text_of(failed) if failed.is_error else ""
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
            assert error, "a call on the killed replica's session did not fail"
            async with http_session(balancer.url, TOKEN) as fresh:
                fresh_pid = await pid_of(fresh)
                lost = await run(fresh, "lost")
                workflow = await run(fresh, "workflows.greet(name='again')")
                artifact = await run(fresh, "artifacts.load('before.txt')")
            survived = await run(survivor, "survives")
    assert "session not found" in error.lower(), error
    assert fresh_pid != victim.process.pid
    assert lost["error_type"] == "NameError"
    assert workflow["value"] == "hello again"
    assert artifact["value"] == "saved before the crash"
    assert survived["value"] == "yes"
