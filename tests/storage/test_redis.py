"""RedisStorage beyond the contract suite: sharing, concurrency, isolation, faults.

The contract suite (test_contract.py) already runs against a real redis-server
through the ``redis`` entry of conftest.BACKENDS; these tests cover what only a
shared network store has.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.errors import (
    ArtifactError,
    ArtifactNotFoundError,
    ConfigError,
    StorageError,
)
from py_code_mode.storage.redis import RedisStorage, mask_url

from .._redis import RedisServer, free_port
from .._redis import own_redis as own_redis

FLOW = '''\
def run(x: int = 1) -> int:
    """Double a number."""
    return x * 2
'''


@pytest.fixture
async def redis_storage(redis_url: str) -> AsyncIterator[RedisStorage]:
    """An opened RedisStorage on a prefix of its own."""
    backend = RedisStorage(redis_url, prefix=f"test-{uuid.uuid4().hex[:12]}")
    await backend.open()
    yield backend
    await backend.close()


def url_with_password(port: int, password: str = "s3cret-Pa55") -> str:
    return f"redis://agent:{password}@127.0.0.1:{port}/0"


# -- configuration -----------------------------------------------------------------------


def test_needs_exactly_one_of_url_and_client(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        RedisStorage()
    client = aioredis.Redis.from_url(redis_url)
    with pytest.raises(ConfigError, match="exactly one"):
        RedisStorage(redis_url, redis=client)


@pytest.mark.parametrize("prefix", ["", "a:b", " lead", "-dash-first", "x" * 101, "tab\t", None, 3])
def test_unusable_prefixes_are_rejected(prefix: Any) -> None:
    with pytest.raises(ConfigError, match="prefix"):
        RedisStorage("redis://localhost:6379/0", prefix=prefix)


@pytest.mark.parametrize(
    "url",
    ["", "localhost:6379", "http://user:hunter2pw@example.org", "redis://host:notaport/0", 42],
)
def test_malformed_urls_are_rejected_without_showing_the_password(url: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisStorage(url)
    assert "hunter2pw" not in str(caught.value)


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "10", 2**40])
def test_a_bad_value_limit_is_rejected(limit: Any) -> None:
    with pytest.raises(ConfigError, match="max_value_bytes"):
        RedisStorage("redis://localhost:6379/0", max_value_bytes=limit)


def test_a_sync_client_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"redis\.asyncio\.Redis"):
        RedisStorage(redis=sync_redis.Redis())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:pw@host:6379", "redis://:***@host:6379"),
        ("rediss://pw@host", "rediss://***@host"),
        ("redis://host:6379/2", "redis://host:6379/2"),
        ("unix:///run/redis.sock?db=1&password=pw", "unix:///run/redis.sock?db=1&password=***"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_importing_the_package_does_not_import_redis() -> None:
    code = (
        "import sys, py_code_mode\n"
        "assert 'redis' not in sys.modules, 'redis imported eagerly'\n"
        "from py_code_mode import RedisStorage\n"
        "from py_code_mode.storage.redis import RedisStorage as R\n"
        "assert RedisStorage is R\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- faults ------------------------------------------------------------------------------


async def test_redis_down_at_start_is_a_clear_error_with_the_password_masked() -> None:
    port = free_port()
    backend = RedisStorage(url_with_password(port), prefix="down")
    with pytest.raises(StorageError) as caught:
        await backend.open()
    message = str(caught.value)
    assert "s3cret-Pa55" not in message
    assert f"redis://agent:***@127.0.0.1:{port}/0" in message
    assert "running" in message
    assert isinstance(caught.value.__cause__, RedisError)
    assert "s3cret-Pa55" not in repr(backend)
    await backend.close()


async def test_every_operation_fails_with_storage_error_while_redis_is_down() -> None:
    backend = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", prefix="down")
    calls = [
        backend.list_workflows(),
        backend.get_workflow("flow"),
        backend.save_workflow(analyze_workflow("flow", FLOW)),
        backend.delete_workflow("flow"),
        backend.list_artifacts(),
        backend.save_artifact("a", "x"),
        backend.load_artifact("a"),
        backend.get_artifact_info("a"),
        backend.delete_artifact("a"),
        backend.list_deps(),
        backend.add_dep("attrs"),
        backend.remove_dep("attrs"),
        backend.get_vectors("m", ["k"]),
        backend.put_vectors("m", {"k": [1.0]}),
    ]
    for call in calls:
        with pytest.raises(StorageError):
            await call
    await backend.close()


async def test_wrong_password_is_reported_without_revealing_it(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="right-password") as server:
        backend = RedisStorage(url_with_password(server.port, "wrong-password"), prefix="p")
        with pytest.raises(StorageError, match="credentials") as caught:
            await backend.open()
        assert "wrong-password" not in str(caught.value)
        await backend.close()
        good = RedisStorage(server.url, prefix="p")
        await good.open()
        await good.save_artifact("a", b"ok")
        assert await good.load_artifact("a") == b"ok"
        await good.close()


async def test_restart_mid_session_fails_clearly_then_recovers_without_partial_writes(
    own_redis: RedisServer,
) -> None:
    backend = RedisStorage(own_redis.url, prefix="restart")
    await backend.open()
    before = await backend.save_artifact("keep", b"version one", description="v1")
    await backend.save_workflow(analyze_workflow("flow", FLOW))
    await backend.add_dep("attrs")

    own_redis.stop()
    with pytest.raises(StorageError, match="cannot reach Redis") as caught:
        await backend.save_artifact("keep", {"version": 2}, description="v2")
    assert isinstance(caught.value.__cause__, RedisError)
    with pytest.raises(StorageError):
        await backend.list_workflows()
    with pytest.raises(StorageError):
        await backend.add_dep("pandas")

    own_redis.start()  # same port, data from the append-only file
    assert await backend.load_artifact("keep") == b"version one"
    assert await backend.get_artifact_info("keep") == before
    assert [w.name for w in await backend.list_workflows()] == ["flow"]
    assert await backend.list_deps() == ["attrs"]
    after = await backend.save_artifact("keep", {"version": 2})
    assert after.created_at == before.created_at
    assert await backend.load_artifact("keep") == {"version": 2}
    await backend.close()


async def test_scripts_still_run_after_the_server_forgot_them(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    await redis_storage.save_artifact("a", 1)
    async with aioredis.Redis.from_url(redis_url) as admin:
        await admin.script_flush()
    await redis_storage.save_artifact("a", 2)
    await redis_storage.add_dep("attrs")
    assert await redis_storage.load_artifact("a") == 2
    assert await redis_storage.list_deps() == ["attrs"]


async def test_a_key_of_the_wrong_type_is_a_storage_error(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    async with aioredis.Redis.from_url(redis_url) as admin:
        await admin.set(f"{redis_storage.prefix}:workflows", b"not a hash")
    with pytest.raises(StorageError, match="WRONGTYPE"):
        await redis_storage.list_workflows()


async def test_foreign_or_corrupt_entries_are_skipped_in_lists_and_reported_on_get(
    redis_storage: RedisStorage, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await redis_storage.save_workflow(analyze_workflow("good", FLOW))
    await redis_storage.save_artifact("fine", "ok")
    async with aioredis.Redis.from_url(redis_url) as admin:
        await admin.hset(f"{redis_storage.prefix}:workflows", "broken", b"1.5\n{not json")
        await admin.hset(f"{redis_storage.prefix}:workflows", "plain", b"no created line")
        await admin.hset(
            f"{redis_storage.prefix}:artifacts", "odd", b'1.5\n{"name": "odd", "kind": "pickle"}'
        )
        await admin.hset(f"{redis_storage.prefix}:vectors:m", "bad", b"\x00\x01\x02")
    with caplog.at_level("WARNING", logger="py_code_mode.storage.redis"):
        assert [w.name for w in await redis_storage.list_workflows()] == ["good"]
        assert [w.name for w in await redis_storage.list_workflows()] == ["good"]
    assert len(caplog.records) == 2  # once per bad entry, not once per listing
    assert [a.name for a in await redis_storage.list_artifacts()] == ["fine"]
    with pytest.raises(StorageError, match="broken"):
        await redis_storage.get_workflow("broken")
    assert await redis_storage.get_vectors("m", ["bad"]) == {}


async def test_an_index_entry_without_payload_reports_not_found(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    await redis_storage.save_artifact("evicted", b"data")
    async with aioredis.Redis.from_url(redis_url) as admin:
        await admin.delete(f"{redis_storage.prefix}:artifact:evicted")
    with pytest.raises(ArtifactNotFoundError, match="payload"):
        await redis_storage.load_artifact("evicted")
    assert await redis_storage.delete_artifact("evicted") is True
    assert await redis_storage.list_artifacts() == []


async def test_a_library_of_a_newer_layout_is_refused(redis_url: str) -> None:
    prefix = f"layout-{uuid.uuid4().hex[:8]}"
    async with aioredis.Redis.from_url(redis_url) as admin:
        await admin.set(f"{prefix}:layout", b"99")
    backend = RedisStorage(redis_url, prefix=prefix)
    with pytest.raises(StorageError, match="layout"):
        await backend.open()
    await backend.close()


# -- size limit --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"x" * 1001, id="bytes"),
        pytest.param("y" * 1001, id="str"),
        pytest.param("é" * 501, id="str-counted-in-utf8-bytes"),
        pytest.param({"rows": ["z" * 100] * 10}, id="json"),
    ],
)
async def test_oversize_values_are_refused_and_nothing_is_stored(
    redis_url: str, value: Any
) -> None:
    backend = RedisStorage(redis_url, prefix=f"size-{uuid.uuid4().hex[:8]}", max_value_bytes=1000)
    await backend.save_artifact("big", "small and old")
    with pytest.raises(ArtifactError, match="max_value_bytes") as caught:
        await backend.save_artifact("big", value)
    assert "1,000 bytes" in str(caught.value)
    assert await backend.load_artifact("big") == "small and old"
    await backend.close()


async def test_a_value_of_exactly_the_limit_is_stored(redis_url: str) -> None:
    backend = RedisStorage(redis_url, prefix=f"size-{uuid.uuid4().hex[:8]}", max_value_bytes=1000)
    await backend.save_artifact("edge", b"x" * 1000)
    assert await backend.load_artifact("edge") == b"x" * 1000
    await backend.close()


async def test_oversize_metadata_is_refused(redis_url: str) -> None:
    backend = RedisStorage(redis_url, prefix=f"size-{uuid.uuid4().hex[:8]}", max_value_bytes=100)
    with pytest.raises(ArtifactError, match="metadata"):
        await backend.save_artifact("a", "x", metadata={"notes": "n" * 200})
    assert await backend.get_artifact_info("a") is None
    await backend.close()


async def test_a_megabyte_of_binary_round_trips(redis_storage: RedisStorage) -> None:
    blob = os.urandom(1024 * 1024)
    info = await redis_storage.save_artifact("blob.bin", blob)
    assert info.size == len(blob)
    assert await redis_storage.load_artifact("blob.bin") == blob


# -- clients, lifecycle ------------------------------------------------------------------


async def test_a_decoding_client_passed_in_is_used_bytes_safely_and_left_open(
    redis_url: str,
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    backend = RedisStorage(redis=client, prefix=f"client-{uuid.uuid4().hex[:8]}")
    await backend.open()
    await backend.save_artifact("raw", b"\xff\x00\xfe")
    assert await backend.load_artifact("raw") == b"\xff\x00\xfe"
    await backend.close()
    assert await client.ping() is True  # still usable: it belongs to the caller
    await client.aclose()


async def test_a_bytes_client_passed_in_is_used_as_is_and_left_open(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    backend = RedisStorage(redis=client, prefix=f"client-{uuid.uuid4().hex[:8]}")
    await backend.save_artifact("t", "text")
    assert await backend.load_artifact("t") == "text"
    assert "127.0.0.1" in backend.location
    await backend.close()
    assert await client.ping() is True
    await client.aclose()


async def test_the_backend_works_before_open_and_after_close(redis_url: str) -> None:
    backend = RedisStorage(redis_url, prefix=f"life-{uuid.uuid4().hex[:8]}")
    await backend.save_artifact("a", 1)
    await backend.close()
    assert await backend.load_artifact("a") == 1
    await backend.close()


def test_one_backend_can_serve_several_event_loops_one_after_another(redis_url: str) -> None:
    backend = RedisStorage(redis_url, prefix=f"loops-{uuid.uuid4().hex[:8]}")
    asyncio.run(backend.save_artifact("a", "first loop"))
    assert asyncio.run(backend.load_artifact("a")) == "first loop"
    asyncio.run(backend.close())


# -- layout and isolation ----------------------------------------------------------------


async def fill(backend: RedisStorage, tag: str) -> None:
    await backend.save_workflow(analyze_workflow("flow", FLOW, tag))
    await backend.save_artifact("data/item", {"tag": tag}, description=tag)
    await backend.add_dep(f"pkg-{tag}")
    await backend.put_vectors(
        "BAAI/bge-small-en-v1.5", {"hash": [1.0, 2.0] if tag == "a" else [9.0]}
    )


async def test_prefixes_on_one_server_never_see_each_other(own_redis: RedisServer) -> None:
    first = RedisStorage(own_redis.url, prefix="team-a")
    second = RedisStorage(own_redis.url, prefix="team-b")
    await fill(first, "a")
    fresh = RedisStorage(own_redis.url, prefix="team-b")
    assert await fresh.list_workflows() == []
    assert await fresh.list_artifacts() == []
    assert await fresh.list_deps() == []
    assert await fresh.get_vectors("BAAI/bge-small-en-v1.5", ["hash"]) == {}

    await fill(second, "b")
    flow = await first.get_workflow("flow")
    assert flow is not None
    assert flow.description == "a"
    assert await first.load_artifact("data/item") == {"tag": "a"}
    assert await first.list_deps() == ["pkg-a"]
    vectors = await first.get_vectors("BAAI/bge-small-en-v1.5", ["hash"])
    assert vectors["hash"] == pytest.approx([1.0, 2.0])

    assert await second.delete_workflow("flow")
    assert await second.delete_artifact("data/item")
    assert await second.remove_dep("pkg-b")
    assert await first.get_workflow("flow") is not None
    assert await first.get_artifact_info("data/item") is not None

    async with aioredis.Redis.from_url(own_redis.url) as admin:
        keys = [k.decode() async for k in admin.scan_iter(count=1000)]
    assert keys
    assert all(k.startswith(("team-a:", "team-b:")) for k in keys), keys
    for backend in (first, second, fresh):
        await backend.close()


async def test_vectors_are_stored_as_packed_float32(
    redis_storage: RedisStorage, redis_url: str
) -> None:
    await redis_storage.put_vectors("m", {"h": [0.5] * 384})
    async with aioredis.Redis.from_url(redis_url) as admin:
        assert await admin.hstrlen(f"{redis_storage.prefix}:vectors:m", "h") == 384 * 4
    assert (await redis_storage.get_vectors("m", ["h", "h"]))["h"] == [0.5] * 384


# -- several processes -------------------------------------------------------------------

AGENT = textwrap.dedent(
    """
    import asyncio, json, sys
    from py_code_mode._private.workflow_source import analyze_workflow
    from py_code_mode.storage.redis import RedisStorage

    async def main(url, prefix):
        storage = RedisStorage(url, prefix=prefix)
        await storage.open()
        print(json.dumps("ready"), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            op = cmd.pop("op")
            if op == "save_workflow":
                await storage.save_workflow(analyze_workflow(cmd["name"], cmd["source"]))
                out = True
            elif op == "get_workflow":
                record = await storage.get_workflow(cmd["name"])
                out = None if record is None else record.to_dict()
            elif op == "delete_workflow":
                out = await storage.delete_workflow(cmd["name"])
            elif op == "list_workflows":
                out = [r.name for r in await storage.list_workflows()]
            else:
                out = {"unknown": op}
            print(json.dumps(out), flush=True)
        await storage.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from py_code_mode._private.workflow_source import analyze_workflow
    from py_code_mode.storage.redis import RedisStorage

    async def main(url, prefix, worker, count):
        storage = RedisStorage(url, prefix=prefix)
        await storage.open()
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        for i in range(count):
            await storage.save_artifact(f"w{worker}/item{i}", {"worker": worker, "i": i})
            await storage.save_artifact("shared", f"{worker}-{i}")
            await storage.add_dep(f"pkg-w{worker}-{i}")
            await storage.add_dep(f"common=={worker}.{i}")
            await storage.put_vectors("m", {f"w{worker}-{i}": [worker, i]})
            source = f"def run():\\n    return {worker * 1000 + i}\\n"
            await storage.save_workflow(analyze_workflow(f"flow_w{worker}_{i}", source))
        await storage.close()
        print("done", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    """
)


async def spawn(script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def read_line(proc: asyncio.subprocess.Process) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
    if not line:
        assert proc.stderr is not None
        err = await asyncio.wait_for(proc.stderr.read(), timeout=10)
        raise AssertionError(f"child exited early: {err.decode(errors='replace')}")
    return line.decode()


async def ask(proc: asyncio.subprocess.Process, **cmd: Any) -> Any:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(cmd).encode() + b"\n")
    await proc.stdin.drain()
    return json.loads(await read_line(proc))


async def finish(proc: asyncio.subprocess.Process) -> None:
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), timeout=30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def test_a_workflow_saved_by_another_process_is_seen_and_deleted_immediately(
    redis_url: str,
) -> None:
    prefix = f"shared-{uuid.uuid4().hex[:8]}"
    here = RedisStorage(redis_url, prefix=prefix)
    other = await spawn(AGENT, redis_url, prefix)
    try:
        assert json.loads(await read_line(other)) == "ready"

        assert await ask(other, op="save_workflow", name="double", source=FLOW) is True
        seen = await here.get_workflow("double")
        assert seen is not None
        assert seen.source == FLOW
        assert seen.description == "Double a number."
        assert [w.name for w in await here.list_workflows()] == ["double"]

        await here.save_workflow(analyze_workflow("triple", FLOW.replace("* 2", "* 3")))
        assert await ask(other, op="list_workflows") == ["double", "triple"]
        got = await ask(other, op="get_workflow", name="triple")
        assert "x * 3" in got["source"]

        assert await here.delete_workflow("double") is True
        assert await ask(other, op="get_workflow", name="double") is None
        assert await ask(other, op="delete_workflow", name="triple") is True
        assert await here.list_workflows() == []
    finally:
        await finish(other)
        await here.close()


async def test_concurrent_writers_in_several_processes_lose_nothing(redis_url: str) -> None:
    prefix = f"race-{uuid.uuid4().hex[:8]}"
    workers, count = 4, 25
    procs = [await spawn(WRITER, redis_url, prefix, str(w), str(count)) for w in range(workers)]
    try:
        for proc in procs:
            assert (await read_line(proc)).strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        for proc in procs:
            assert (await read_line(proc)).strip() == "done"
    finally:
        for proc in procs:
            await finish(proc)

    backend = RedisStorage(redis_url, prefix=prefix)
    artifacts = {a.name: a for a in await backend.list_artifacts()}
    expected = {f"w{w}/item{i}" for w in range(workers) for i in range(count)}
    assert set(artifacts) == expected | {"shared"}
    assert await backend.load_artifact("w3/item24") == {"worker": 3, "i": 24}
    shared = await backend.load_artifact("shared")
    assert isinstance(shared, str)
    assert shared.endswith(f"-{count - 1}")
    assert artifacts["shared"].created_at < artifacts["shared"].updated_at

    deps = await backend.list_deps()
    per_worker = {f"pkg-w{w}-{i}" for w in range(workers) for i in range(count)}
    common = [d for d in deps if d.startswith("common==")]
    assert len(common) == 1
    assert sorted(set(deps) - set(common)) == sorted(per_worker)
    assert len(deps) == len(per_worker) + 1
    for w in range(workers):  # each worker's own entries stay in its insertion order
        mine = [d for d in deps if d.startswith(f"pkg-w{w}-")]
        assert mine == [f"pkg-w{w}-{i}" for i in range(count)]

    keys = [f"w{w}-{i}" for w in range(workers) for i in range(count)]
    vectors = await backend.get_vectors("m", keys)
    assert set(vectors) == set(keys)
    assert vectors["w2-7"] == [2.0, 7.0]

    names = {w.name for w in await backend.list_workflows()}
    assert names == {f"flow_w{w}_{i}" for w in range(workers) for i in range(count)}
    await backend.close()


async def test_a_workflow_created_in_one_session_is_invocable_from_another_process(
    redis_url: str,
) -> None:
    pytest.importorskip("py_code_mode.tools.registry", reason="ToolRegistry is not written yet")
    from py_code_mode import Session

    prefix = f"sessions-{uuid.uuid4().hex[:8]}"
    async with Session(storage=RedisStorage(redis_url, prefix=prefix)) as session:
        await session.add_workflow("double", FLOW)
        code = textwrap.dedent(
            f"""
            import asyncio, json
            from py_code_mode import Session, RedisStorage

            async def main():
                storage = RedisStorage({redis_url!r}, prefix={prefix!r})
                async with Session(storage=storage) as session:
                    result = await session.run("workflows.invoke('double', x=21)")
                    print(json.dumps([result.value, result.error]))
                    await session.remove_workflow("double")

            asyncio.run(main())
            """
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert json.loads(out.decode().strip().splitlines()[-1]) == [42, None]
        assert await session.list_workflows() == []


# -- credentials stay on the host ------------------------------------------------------


async def test_the_worker_environment_never_holds_the_redis_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subprocess_executor = pytest.importorskip(
        "py_code_mode.execution.subprocess",
        reason="SubprocessExecutor (py_code_mode.execution.subprocess) is not written yet",
    )
    from py_code_mode import Session

    with RedisServer(tmp_path / "redis", password="worker-must-not-see") as server:
        # Also in the host's environment, where an unscrubbed child would inherit it.
        monkeypatch.setenv("REDIS_URL", server.url)
        storage = RedisStorage(server.url, prefix="env")
        executor = subprocess_executor.SubprocessExecutor(subprocess_executor.SubprocessConfig())
        async with Session(storage=storage, executor=executor) as session:
            await session.save_artifact("proof", "reachable through the namespace")
            result = await session.run(
                "import os\n"
                f"secrets = ({server.url!r}, 'worker-must-not-see', 'redis://')\n"
                "leaks = sorted(k for k, v in os.environ.items()\n"
                "               if k == 'REDIS_URL' or any(s in v for s in secrets))\n"
                "[leaks, artifacts.load('proof')]",
                timeout=60,
            )
        assert result.error is None, result.error
        assert result.value == [[], "reachable through the namespace"]
