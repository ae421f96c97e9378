"""Costs that grow: one operation's time with 10, 1,000 and 10,000 entries stored.

For FileStorage and RedisStorage, with the library already holding N artifacts and
N workflows, times one:

* artifact save (a new 1 KB artifact), load, and list;
* workflow save (a new workflow), get, and list;
* workflow search (lexical ranking through the Session facade, so model loading
  stays out of the figure).

Only list and search may grow with N; a save, load or get that grows is a bug
(e.g. an index rewritten whole on every save).

Usage::

    uv run python bench/bench_growth.py [--sizes 10,1000,10000] [--iterations 20]

Filling 10,000 entries through the API one by one would take longest on exactly
the code paths this measures, so FileStorage libraries are laid out directly on disk
(the documented layout: payload files plus ``artifacts/.index.json``, workflow
``.py`` files) and Redis ones through the backend with many saves in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_storage import start_redis, timed, workflow_source

from py_code_mode import FileStorage, Session
from py_code_mode._private.workflow_source import analyze_workflow
from py_code_mode.search.ranker import LexicalRanker
from py_code_mode.storage.protocol import StorageBackend

PAYLOAD = "x" * 1024
QUERY = "parse csv report from a url"
OPERATIONS = [
    "artifact save",
    "artifact load",
    "artifact list",
    "workflow save",
    "workflow get",
    "workflow list",
    "workflow search",
]


def fill_file_layout(base: Path, count: int) -> None:
    """Write ``count`` artifacts and workflows straight into FileStorage's layout."""
    artifacts = base / "artifacts"
    workflows = base / "workflows"
    artifacts.mkdir(parents=True)
    workflows.mkdir(parents=True)
    now = time.time() - 60
    entries = {}
    for i in range(count):
        name = f"item_{i:05d}.txt"
        (artifacts / name).write_text(PAYLOAD)
        entries[name] = {
            "kind": "str",
            "description": f"artifact number {i}",
            "metadata": {},
            "size": len(PAYLOAD),
            "created_at": now,
            "updated_at": now,
        }
        (workflows / f"flow_{i:05d}.py").write_text(workflow_source(i))
    index = {"version": 1, "artifacts": entries}
    (artifacts / ".index.json").write_text(json.dumps(index, indent=1))
    past = now - 10  # outside FileStorage's two-second "racy" window
    for folder in (artifacts, workflows):
        for path in folder.iterdir():
            os.utime(path, (past, past))


async def fill_backend(storage: StorageBackend, count: int) -> None:
    """Save ``count`` artifacts and workflows through the backend, 16 at a time."""
    for start in range(0, count, 8):
        batch = range(start, min(count, start + 8))
        await asyncio.gather(
            *(
                storage.save_artifact(f"item_{i:05d}.txt", PAYLOAD, description=f"n {i}")
                for i in batch
            ),
            *(
                storage.save_workflow(analyze_workflow(f"flow_{i:05d}", workflow_source(i)))
                for i in batch
            ),
        )


async def measure(storage: StorageBackend, count: int, iterations: int) -> dict[str, float]:
    """Median ms of each operation on a library of ``count`` entries."""
    counter = iter(range(10**9))
    figures: dict[str, float] = {}

    async def op_median(fn: Callable[[], Awaitable[Any]]) -> float:
        await fn()  # warm caches, as a long-running server has them
        return statistics.median(await timed(fn, iterations))

    last = f"item_{count - 1:05d}.txt"
    figures["artifact save"] = await op_median(
        lambda: storage.save_artifact(f"new_{next(counter)}.txt", PAYLOAD)
    )
    figures["artifact load"] = await op_median(lambda: storage.load_artifact(last))
    figures["artifact list"] = await op_median(storage.list_artifacts)
    figures["workflow save"] = await op_median(
        lambda: storage.save_workflow(
            analyze_workflow(f"added_{next(counter)}", workflow_source(count))
        )
    )
    figures["workflow get"] = await op_median(lambda: storage.get_workflow(f"flow_{count - 1:05d}"))
    figures["workflow list"] = await op_median(storage.list_workflows)
    async with Session(storage=storage, ranker=LexicalRanker()) as session:
        figures["workflow search"] = await op_median(
            lambda: session.search_workflows(QUERY, limit=5)
        )
    return figures


async def bench_file(root: Path, count: int, iterations: int) -> dict[str, float]:
    base = root / f"file-{count}"
    fill_file_layout(base, count)
    storage = FileStorage(base)
    await storage.open()
    try:
        return await measure(storage, count, iterations)
    finally:
        await storage.close()


async def bench_redis(url: str, count: int, iterations: int) -> dict[str, float]:
    from py_code_mode.storage.redis import RedisStorage

    storage = RedisStorage(url, prefix=f"growth-{uuid.uuid4().hex[:8]}")
    await storage.open()
    try:
        await fill_backend(storage, count)
        return await measure(storage, count, iterations)
    finally:
        await storage.close()


def show(columns: dict[str, dict[int, dict[str, float]]], sizes: list[int]) -> None:
    """One row per operation, one column per backend and size (median ms)."""
    heads = [f"{name} {size:,}" for name in columns for size in sizes]
    width = max(len(h) for h in heads) + 2
    print(f"{'median ms':18}" + "".join(f"{h:>{width}}" for h in heads))
    for op in OPERATIONS:
        cells = [
            f"{columns[name][size][op]:>{width}.3f}" if size in columns[name] else f"{'-':>{width}}"
            for name in columns
            for size in sizes
        ]
        print(f"{op:18}" + "".join(cells))


async def run(sizes: list[int], iterations: int) -> dict[str, dict[int, dict[str, float]]]:
    columns: dict[str, dict[int, dict[str, float]]] = {"FileStorage": {}}
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        root = Path(tmp)
        for size in sizes:
            columns["FileStorage"][size] = await bench_file(root, size, iterations)
        server = start_redis(root)
        if server is None:
            print("RedisStorage skipped: redis-server is not on PATH", file=sys.stderr)
            return columns
        columns["RedisStorage"] = {}
        try:
            for size in sizes:
                columns["RedisStorage"][size] = await bench_redis(server[1], size, iterations)
        finally:
            server[0].terminate()
            server[0].wait(10)
    return columns


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--sizes", default="10,1000,10000")
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if not all(0 < s <= 100_000 for s in sizes) or not 0 < args.iterations <= 1000:
        parser.error("sizes must be 1..100000 and --iterations 1..1000")
    columns = await run(sizes, args.iterations)
    print(f"\ngrowth: median of {args.iterations} calls, python {sys.version.split()[0]}\n")
    show(columns, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
