"""The container executor beside the in-process and subprocess executors.

Reuses ``bench_executors.measure`` (same code, same figures) for every executor and
adds the container-only figures:

* session start, cold: a new container from an image already present
  (target < 1.5 s);
* session start from the warm pool: a ready container taken from the pool (target
  < 100 ms); the pool is refilled outside the timed part;
* trivial run round trip over the container's attached stdio (target < 3 ms);
* tool call latency from agent code (the tool runs on the host, reached by RPC).

Usage::

    uv run python bench/bench_container.py [--image IMAGE] [--starts 10] [--runs 500]
                                           [--calls 200] [--container-only]

The image defaults to ``$PY_CODE_MODE_BENCH_IMAGE``, else ``py-code-mode-worker:latest``
when present, else the local base image ``local/python:3.11-bookworm`` made by
``.ci/docker.sh``. Exits with a note when no Docker engine is reachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_executors import ECHO_TOOL, make_factories, measure, percentile, show
from bench_executors import ROWS as EXECUTOR_ROWS

from py_code_mode import FileStorage, Session
from py_code_mode.execution import ContainerConfig, ContainerExecutor
from py_code_mode.execution.container import DEFAULT_IMAGE, drain_warm_pool
from py_code_mode.execution.protocol import Executor

FALLBACK_IMAGE = "local/python:3.11-bookworm"

ROWS = [
    ("session start (cold)", "start", "ms", "< 1500 ms (container)"),
    ("session start (warm pool)", "start_warm", "ms", "< 100 ms (container)"),
    *(
        (label, key, unit, "< 3 ms (container)" if key == "run_median" else target)
        for label, key, unit, target in EXECUTOR_ROWS[1:]
    ),
]


def runsc_registered() -> bool:
    """Whether gVisor's runsc is a runtime of the engine (``.ci/docker.sh`` adds it)."""
    import docker

    client = docker.from_env(timeout=10)
    try:
        return "runsc" in (client.info().get("Runtimes") or {})
    finally:
        client.close()


def pick_image(requested: str | None) -> str | None:
    import docker

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except docker.errors.DockerException as exc:
        print(f"no Docker engine is reachable ({exc}); start one with .ci/docker.sh")
        return None
    try:
        candidates = [requested or os.environ.get("PY_CODE_MODE_BENCH_IMAGE") or DEFAULT_IMAGE]
        if not requested:
            candidates.append(FALLBACK_IMAGE)
        for image in candidates:
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                continue
            return image
    finally:
        client.close()
    print(f"none of the images {candidates} is present; build one with .ci/docker.sh")
    return None


async def warm_starts(config: ContainerConfig, base: Path, count: int) -> list[float]:
    """Session starts that take a ready container from the pool (refilled untimed)."""
    samples = []
    try:
        for _ in range(count):
            await ContainerExecutor.prewarm(config)
            session = Session(FileStorage(base / "data-warm"), ContainerExecutor(config))
            began = time.perf_counter()
            await session.start()
            samples.append((time.perf_counter() - began) * 1000)
            result = await session.run("1")
            assert result.is_ok, result.error
            await session.close()
    finally:
        await drain_warm_pool(config)
    return samples


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", help="image for the container executor")
    parser.add_argument("--starts", type=int, default=10, help="session starts to time")
    parser.add_argument("--runs", type=int, default=500, help="trivial runs to time")
    parser.add_argument("--calls", type=int, default=200, help="namespace calls to time")
    parser.add_argument("--container-only", action="store_true", help="skip the other executors")
    args = parser.parse_args()
    image = pick_image(args.image)
    if image is None:
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        base = Path(tmp)
        tools = base / "tools"
        tools.mkdir()
        (tools / "echo.yaml").write_text(textwrap.dedent(ECHO_TOOL))
        factories: dict[str, Callable[[], Executor]] = {}
        if not args.container_only:
            factories.update(make_factories(tools))
        config = ContainerConfig(image=image, tools_path=tools)
        factories["container"] = lambda: ContainerExecutor(config)
        runsc = runsc_registered()
        if runsc:  # gVisor beside runc, same figures
            gvisor = ContainerConfig(image=image, tools_path=tools, runtime="runsc")
            factories["container-runsc"] = lambda: ContainerExecutor(gvisor)
        results: dict[str, dict[str, Any]] = {}
        for name, factory in factories.items():
            began = time.perf_counter()
            results[name] = await measure(name, factory, base, args)
            print(f"# {name}: measured in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        pooled = ContainerConfig(image=image, tools_path=tools, warm_pool=1)
        samples = await warm_starts(pooled, base, args.starts)
        results["container"]["start_warm"] = statistics.median(samples)
        results["container"]["start_warm_p90"] = percentile(samples, 0.9)
        if runsc:
            pooled = ContainerConfig(image=image, tools_path=tools, warm_pool=1, runtime="runsc")
            samples = await warm_starts(pooled, base, args.starts)
            results["container-runsc"]["start_warm"] = statistics.median(samples)
    print(
        f"python {sys.version.split()[0]}, image {image}, {args.starts} starts, "
        f"{args.runs} runs, {args.calls} calls per namespace figure\n"
    )
    show(results, ROWS)
    print(
        "\n(start rows: in-process and subprocess start with a cached venv; the container "
        f"warm-pool start p90 is {results['container']['start_warm_p90']:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
