"""Every speed figure of the project in one run, each beside its budget.

Runs the existing benches' own measuring code (nothing is measured twice over):

* ``bench_executors.measure`` for the in-process, subprocess and (when a Docker
  engine and an image are there) container executors;
* ``bench_mcp.measure_stdio`` for the MCP server over stdio: spawn to
  ``initialize`` answered, ``run_code('1+1')`` and ``tools/list`` round trips;
* ``bench_executors.import_time_ms`` for ``import py_code_mode`` (beside ``python -c
  pass``);
* ``bench_search.split_recall`` for search recall@1 on paraphrased queries: the
  tuning splits, the held-out half and the fresh held-out set (needs the offline
  model, see tests/search/eval_set.py);
* with ``--growth``, ``bench_growth`` (10 / 1,000 / 10,000 entries per backend);
* with ``--load``, ``bench_load.one_server``: 50 agents over streamable HTTP looping
  ``run_code('1+1')`` on one server, p99 beside its budget.

* ``bench_mcp_client.py`` for the same round trips through the SDK's client: once
  under this venv (mcp 2.x) and once under a venv with mcp 1.x (``--mcp1-python``,
  by default the venv ``.ci/mcp1.sh`` builds; skipped when it is not there).

Then prints one table: figure, our value, budget, and ``ok`` or ``OVER``. The HTTP
load figure comes from bench/bench_load.py and is listed as not measured here.

Usage::

    uv run python bench/run_all.py [--quick] [--growth] [--load] [--no-container]

Wall-clock figures depend on what else the machine is doing: the one-minute load
average is printed with the table, and a figure over budget on a loaded machine
should be measured again before it is believed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import bench_executors
from bench_executors import ECHO_TOOL, import_time_ms, make_factories, measure

from py_code_mode.execution.protocol import Executor

JAILED = "subprocess-bwrap"
"""The subprocess executor as configured by default on Linux: the column its budgets use."""

# (label, source, key, budget, lower_is_better, unit)
BUDGETS: list[tuple[str, str, str, float, bool, str]] = [
    ("in-process: print 1,000 lines (run)", "in-process", "print_1000_median", 0.55, True, "ms"),
    (
        "in-process: 100 KB str artifact save+load",
        "in-process",
        "artifact_str_100k_median",
        1.09,
        True,
        "ms",
    ),
    ("MCP stdio: tools/list round trip", "mcp", "tools_list", 1.49, True, "ms"),
    ("subprocess (bwrap): run('1+1') round trip", JAILED, "run_median", 0.1, True, "ms"),
    (
        "subprocess (bwrap): 100 KB str artifact save+load",
        JAILED,
        "artifact_str_100k_median",
        1.5,
        True,
        "ms",
    ),
    ("subprocess (bwrap): print 1,000 lines (run)", JAILED, "print_1000_median", 1.5, True, "ms"),
    ("subprocess (bwrap): session start, cached venv", JAILED, "start", 80.0, True, "ms"),
    ("MCP stdio: run_code('1+1'), raw client", "mcp", "run_code", 2.0, True, "ms"),
    ("MCP stdio: run_code('1+1'), mcp 2.x client", "client2", "run_code", 2.0, True, "ms"),
    ("MCP stdio: tools/list, mcp 2.x client", "client2", "tools_list", 1.49, True, "ms"),
    ("MCP stdio: run_code('1+1'), mcp 1.x client", "client1", "run_code", 2.0, True, "ms"),
    ("MCP stdio: tools/list, mcp 1.x client", "client1", "tools_list", 1.49, True, "ms"),
    ("MCP stdio: initialize, spawn -> ready", "mcp", "initialize", 300.0, True, "ms"),
    ("import py_code_mode", "import", "import", 50.0, True, "ms"),
    ("search R@1 paraphrased, held-out half", "search", "held_out", 0.90, False, ""),
    ("search R@1 paraphrased, fresh held-out set", "search", "fresh", 0.90, False, ""),
]
NOT_HERE = [
    ("HTTP, 50 agents looping run_code('1+1'), p99", "<= 50 ms", "run_all.py --load"),
]
LOAD_ROWS = [
    ("HTTP, 50 agents looping run_code('1+1'), p99", "load", "p99 1+1", 50.0, True, "ms"),
]
MCP1_VENV = Path.home() / ".cache" / "py-code-mode" / "ci-mcp1-venv"
"""The venv ``.ci/mcp1.sh`` builds: mcp 1.21, the default client of the 1.x figure."""


def python_startup_ms(count: int = 7) -> float:
    """Median ms of ``python -c pass``: the floor under any import figure."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def storage_figures(count: int) -> dict[str, float]:
    """FileStorage's 100 KB str save+load, with its fsyncs and with them counted out.

    A/B interleaved in one store. The fsyncs (a save's crash safety) cost whatever the
    disk takes; counted out, what is left is the library's own work. ``fsyncs`` is
    how many one save of an existing artifact makes.
    """
    from py_code_mode import FileStorage

    real_fsync = os.fsync
    calls = 0

    def counting(fd: Any) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    def skipping(fd: Any) -> None:
        pass

    text = "x" * 100_000
    samples: dict[str, list[float]] = {"synced": [], "fsync counted out": []}
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        storage = FileStorage(Path(tmp))
        await storage.save_artifact("a", text)
        try:
            for _ in range(count):
                for label, fsync in (("synced", counting), ("fsync counted out", skipping)):
                    os.fsync = fsync
                    began = time.perf_counter()
                    await storage.save_artifact("a", text)
                    await storage.load_artifact("a")
                    samples[label].append((time.perf_counter() - began) * 1000)
        finally:
            os.fsync = real_fsync
    figures = {label: statistics.median(values) for label, values in samples.items()}
    figures["fsyncs"] = calls / count
    return figures


def container_factory(tools: Path) -> Callable[[], Executor] | None:
    """The container executor's factory when an engine and an image are there."""
    try:
        from bench_container import pick_image

        from py_code_mode.execution import ContainerConfig, ContainerExecutor

        image = pick_image(None)
    except Exception as exc:  # noqa: BLE001 - no docker SDK, no engine: skip the column
        print(f"# container executor skipped: {exc}", file=sys.stderr)
        return None
    if image is None:
        return None
    config = ContainerConfig(image=image, tools_path=tools)
    return lambda: ContainerExecutor(config)


async def executor_figures(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        base = Path(tmp)
        tools = base / "tools"
        tools.mkdir()
        (tools / "echo.yaml").write_text(textwrap.dedent(ECHO_TOOL))
        factories = make_factories(tools)
        if not args.no_container:
            container = container_factory(tools)
            if container is not None:
                factories["container"] = container
        for name, factory in factories.items():
            began = time.perf_counter()
            results[name] = await measure(name, factory, base, args)
            print(f"# {name}: measured in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return results


def mcp_figures(args: argparse.Namespace) -> dict[str, float]:
    from bench_mcp import measure_stdio

    cpu: list[float] = []
    startup, first_start, _first, trips, listings, _big, _chars = measure_stdio(
        None, args.starts, args.calls, cpu
    )
    return {
        "initialize": statistics.median(startup) * 1000,
        "first_start": first_start * 1000,
        "initialize_cpu": statistics.median(cpu) * 1000 if cpu else float("nan"),
        "run_code": statistics.median(trips),
        "tools_list": statistics.median(listings),
    }


def client_figures(client_python: Path | str, calls: int) -> dict[str, float] | None:
    """``run_code('1+1')`` and ``tools/list`` medians through an SDK client over stdio.

    ``client_python`` is the interpreter of the client's venv (any mcp major); the
    server runs under this interpreter, so both majors meet the same server.
    """
    script = Path(__file__).with_name("bench_mcp_client.py")
    command = [str(client_python), str(script), "--server-python", sys.executable]
    try:
        done = subprocess.run(
            [*command, "--calls", str(calls)],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"# {client_python}: client bench failed: {exc}", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"# {client_python}: client bench failed: {done.stderr[-500:]}", file=sys.stderr)
        return None
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "version": figures["mcp_client"],
        "run_code": figures["run_code_1plus1_ms"]["median"],
        "tools_list": figures["tools_list_ms"]["median"],
    }


async def search_figures() -> dict[str, float] | None:
    from bench_search import split_recall
    from tests.search.eval_set import local_model_dir

    from py_code_mode.search.embeddings import Embedder

    model = local_model_dir()
    if model is None:
        print("# search recall skipped: the offline model is not there", file=sys.stderr)
        return None
    embedder = Embedder(model)
    if embedder.load(timeout=120).state != "ready":
        return None
    return {split: at1 for split, (at1, _at3) in (await split_recall(embedder)).items()}


def verdict(value: float, budget: float, lower_is_better: bool) -> str:
    ok = value <= budget if lower_is_better else value >= budget
    return "ok" if ok else "OVER"


def show_budgets(sources: dict[str, dict[str, Any]]) -> None:
    print(f"\n{'figure':46} {'ours':>10} {'budget':>12}")
    print("-" * 76)
    for label, source, key, budget, lower, unit in [*BUDGETS, *LOAD_ROWS]:
        if source == "load" and "load" not in sources:
            continue
        value = sources.get(source, {}).get(key)
        sign = "<=" if lower else ">="
        limit = f"{sign} {budget:g} {unit}".rstrip()
        if not isinstance(value, float | int):
            print(f"{label:46} {'-':>10} {limit:>12}   not measured")
            continue
        shown = f"{value:.3f} {unit}".rstrip() if value < 100 else f"{value:.0f} {unit}"
        print(f"{label:46} {shown:>10} {limit:>12}   {verdict(value, budget, lower)}")
    for label, limit, why in [] if "load" in sources else NOT_HERE:
        print(f"{label:46} {'-':>10} {limit:>12}   not measured here ({why})")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (about 1 minute)")
    parser.add_argument("--growth", action="store_true", help="also the 10/1k/10k growth table")
    parser.add_argument("--no-container", action="store_true", help="skip the container column")
    parser.add_argument(
        "--load",
        action="store_true",
        help="also 50 SDK clients looping run_code('1+1') over HTTP on one server (~1 minute)",
    )
    parser.add_argument(
        "--mcp1-python",
        type=Path,
        default=MCP1_VENV / "bin" / "python",
        help="interpreter of a venv with mcp 1.x, for the 1.x client's figures "
        "(default: the venv of .ci/mcp1.sh)",
    )
    args = parser.parse_args()
    args.starts, args.runs, args.calls = (3, 300, 100) if args.quick else (10, 1000, 300)

    sources: dict[str, dict[str, Any]] = await executor_figures(args)
    sources["mcp"] = mcp_figures(args)
    if (client2 := client_figures(sys.executable, args.calls)) is not None:
        sources["client2"] = client2
    if not args.mcp1_python.exists():
        print(f"# mcp 1.x client skipped: {args.mcp1_python} is not there", file=sys.stderr)
    elif (client1 := client_figures(args.mcp1_python, args.calls)) is not None:
        sources["client1"] = client1
    sources["import"] = {"import": import_time_ms(), "python": python_startup_ms()}
    storage = await storage_figures(max(args.calls, 50))
    recall = await search_figures()
    if recall is not None:
        sources["search"] = recall

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f}; "
        f"{args.starts} starts, {args.runs} runs, {args.calls} calls per figure\n"
    )
    executors = {
        k: v
        for k, v in sources.items()
        if k in ("in-process", "container") or k.startswith("subprocess")
    }
    bench_executors.show(executors)
    mcp = sources["mcp"]
    print(
        f"\nMCP stdio (raw JSON-RPC client): initialize {mcp['initialize']:.0f} ms "
        f"({mcp['initialize_cpu']:.0f} ms of server CPU; {mcp['first_start']:.0f} ms on a "
        "first start with no bytecode cached), "
        f"run_code('1+1') {mcp['run_code']:.3f} ms, tools/list {mcp['tools_list']:.3f} ms"
    )
    for key in ("client2", "client1"):
        if key in sources:
            client = sources[key]
            print(
                f"MCP stdio through the mcp {client['version']} client: run_code('1+1') "
                f"{client['run_code']:.3f} ms, tools/list {client['tools_list']:.3f} ms"
            )
    print(
        f"import py_code_mode {sources['import']['import']:.1f} ms "
        f"(python -c pass: {sources['import']['python']:.1f} ms)"
    )
    print(
        f"FileStorage 100 KB str save+load (no executor): {storage['synced']:.3f} ms with "
        f"its {storage['fsyncs']:.0f} fsyncs per save, {storage['fsync counted out']:.3f} ms "
        "with them counted out"
    )
    if recall is not None:
        print(
            f"search R@1 on paraphrased queries: tuning {recall['tuning']:.2f} and "
            f"{recall['tuning_extra']:.2f} (extra), held-out half {recall['held_out']:.2f}, "
            f"fresh held-out set {recall['fresh']:.2f}"
        )
    if args.load:
        import bench_load

        load = bench_load.Load(seconds=5.0 if args.quick else 10.0, kinds=("1+1",))
        sources["load"] = await bench_load.one_server(50, load)
        row = sources["load"]
        print(
            f"HTTP load, 50 SDK clients on one server: {row.get('calls/s', 0):.0f} calls/s, "
            f"p50 {row.get('p50 1+1', float('nan')):.0f} ms, errors {row.get('errors')}; "
            f"CPU per call: server {row.get('CPU/call: server', float('nan')):.2f} ms, "
            f"clients {row.get('CPU/call: clients', float('nan')):.2f} ms (same cores)"
        )
    show_budgets(sources)

    if args.growth:
        import bench_growth

        sizes = [10, 1000, 10000]
        print("\ngrowth: median ms of one call with N artifacts and N workflows stored\n")
        bench_growth.show(await bench_growth.run(sizes, 10 if args.quick else 20), sizes)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
