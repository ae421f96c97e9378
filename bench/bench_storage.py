"""FileStorage and RedisStorage side by side, through the Session facade.

Measures, for each backend holding 1,000 workflows:

* ``list_workflows``: the full listing an agent asks for (no source), and the
  backend's own ``list_workflows`` without the facade's conversion to dicts;
* ``search_workflows``: a query ranked over all 1,000 (the default ranker: by meaning
  when an embedding model loads, lexical otherwise);
* artifact round trip: ``save_artifact`` then ``load_artifact`` of 1 MB of bytes;
* setup: saving the 1,000 workflows one by one (for scale, not a target).

Usage::

    uv run python bench/bench_storage.py [--workflows 1000] [--iterations 30]
                                         [--redis-url redis://host:port/0]

Without ``--redis-url`` the script starts its own ``redis-server`` on a free port
(no persistence) and stops it at the end; RedisStorage is left out, with a note,
when the binary is missing. FileStorage's per-file cache ignores files modified in
the last two seconds, so the script waits that long after writing before timing
(``first list`` shows the cost before that cache is warm).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from py_code_mode import FileStorage, Session
from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.storage.protocol import StorageBackend

VERBS = ["fetch", "parse", "summarise", "convert", "download", "validate", "merge", "plot"]
NOUNS = ["json", "csv report", "html page", "sales figures", "log file", "image", "rss feed"]
SERVER_START_TIMEOUT = 15.0


def workflow_source(i: int) -> str:
    verb, noun = VERBS[i % len(VERBS)], NOUNS[(i // len(VERBS)) % len(NOUNS)]
    return (
        "import json\n\n\n"
        f"def run(url: str, limit: int = {i % 50}) -> dict:\n"
        f'    """{verb.capitalize()} the {noun} at a URL (variant {i}).\n\n'
        "    Longer notes that are not part of the description.\n"
        '    """\n'
        f"    return {{'url': url, 'limit': limit, 'variant': {i}}}\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    proc.wait(10)
    raise RuntimeError("redis-server did not start")


async def timed(fn: Callable[[], Awaitable[Any]], iterations: int) -> list[float]:
    """Milliseconds of each of ``iterations`` calls."""
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):8.2f} ms (p95 {p95:7.2f})"


async def bench_backend(storage: StorageBackend, count: int, iterations: int) -> dict[str, str]:
    results: dict[str, str] = {}
    await storage.open()
    start = time.perf_counter()
    for i in range(count):
        await storage.save_workflow(analyze_workflow(f"flow_{i:04d}", workflow_source(i)))
    results["save workflows (setup)"] = f"{time.perf_counter() - start:8.2f} s total"

    async with Session(storage=storage) as session:
        start = time.perf_counter()
        listed = await session.list_workflows()
        results["first list"] = f"{(time.perf_counter() - start) * 1000:8.2f} ms"
        if len(listed) != count:
            raise RuntimeError(f"{type(storage).__name__} listed {len(listed)} of {count}")
        await asyncio.sleep(2.1)  # past FileStorage's two-second "racy" window
        results[f"list_workflows ({count})"] = summary(
            await timed(session.list_workflows, iterations)
        )
        results["  backend alone: list_workflows"] = summary(
            await timed(storage.list_workflows, iterations)
        )
        hits = await session.search_workflows("parse csv report from a url", limit=5)
        if not hits:
            raise RuntimeError("search found nothing")
        results[f"search_workflows ({count})"] = summary(
            await timed(
                lambda: session.search_workflows("parse csv report from a url", limit=5),
                iterations,
            )
        )
        blob = os.urandom(1024 * 1024)

        async def round_trip() -> None:
            await session.save_artifact("blob.bin", blob)
            if await session.load_artifact("blob.bin") != blob:
                raise RuntimeError("artifact came back different")

        results["artifact 1 MB save+load"] = summary(await timed(round_trip, iterations))
    return results


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--workflows", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--redis-url", default=None, help="use this server instead of starting one")
    args = parser.parse_args()
    if not 0 < args.iterations <= 1000 or not 0 < args.workflows <= 100_000:
        parser.error("--iterations must be 1..1000 and --workflows 1..100000")

    columns: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        root = Path(tmp)
        columns["FileStorage"] = await bench_backend(
            FileStorage(root / "file"), args.workflows, args.iterations
        )
        server = None
        url = args.redis_url
        if url is None:
            server = start_redis(root)
            if server is None:
                notes.append("RedisStorage skipped: redis-server is not on PATH")
            else:
                url = server[1]
        try:
            if url is not None:
                from py_code_mode.storage.redis import RedisStorage, mask_url

                prefix = f"bench-{uuid.uuid4().hex[:8]}"
                storage = RedisStorage(url, prefix=prefix)
                columns["RedisStorage"] = await bench_backend(
                    storage, args.workflows, args.iterations
                )
                notes.append(f"Redis: {mask_url(url)} (prefix {prefix})")
                if args.redis_url is not None:
                    await _delete_prefix(url, prefix)
        finally:
            if server is not None:
                server[0].terminate()
                server[0].wait(10)

    rows = list(next(iter(columns.values())))
    width = max(len(r) for r in rows) + 2
    print(f"\nstorage benchmark: {args.workflows} workflows, {args.iterations} iterations each")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("".ljust(width) + "".join(name.ljust(30) for name in columns))
    for row in rows:
        print(row.ljust(width) + "".join(col.get(row, "-").ljust(30) for col in columns.values()))
    for note in notes:
        print(f"\n{note}")
    return 0


async def _delete_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    async with aioredis.Redis.from_url(url) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
