"""The in-process and subprocess executors side by side.

Figures (targets from the subprocess executor issue, 2-core machine):

* session start with a cached venv (subprocess: < 150 ms);
* trivial run round trip, ``run("1+1")``: median and p90 (< 1 ms median for the
  subprocess executor, < 0.15 ms for in-process);
* a tool call from agent code: a CLI ``echo`` tool, timed inside the run around
  each call (< 1 ms median target; spawning ``echo`` alone costs about a millisecond
  here, so the RPC-only calls below show the executor's share);
* RPC-only namespace calls, ``tools.list()`` and ``artifacts.exists('x')``: what
  one round trip to the host costs;
* a run printing 1,000 lines (``for i in range(1000): print(i)``), timed from the host;
* an artifact round trip of 100 KB, bytes and str (save then load, from agent code)
  and a workflow invoke (a trivial workflow, from agent code);
* ``import py_code_mode`` in a fresh interpreter (< 150 ms);
* ``while True: pass`` with ``timeout=1``: time until the result is back
  (< 1.5 s), and whether the next run works.

Usage::

    uv run python bench/bench_executors.py [--starts 10] [--runs 500] [--calls 200]

Everything runs in temporary directories; iterations are bounded so the whole
script takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from py_code_mode import FileStorage, Session
from py_code_mode.execution import (
    InProcessConfig,
    InProcessExecutor,
    SubprocessConfig,
    SubprocessExecutor,
)
from py_code_mode.execution.protocol import Executor

ECHO_TOOL = """
name: echo
description: Print text with echo
command: echo
separator: null
timeout: 10
schema:
  positional:
    - {name: text, type: string, required: true, description: Text to print}
recipes:
  say:
    description: Print a word
    params:
      text: {type: string, default: hi, description: The word}
"""

TIMED_CALLS = """
import time as _t
_samples = []
for _ in range({calls}):
    _s = _t.perf_counter()
    {call}
    _samples.append((_t.perf_counter() - _s) * 1000)
_samples
"""


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def make_factories(tools: Path) -> dict[str, Callable[[], Executor]]:
    return {
        "in-process": lambda: InProcessExecutor(InProcessConfig(tools_path=tools)),
        "subprocess-bwrap": lambda: SubprocessExecutor(
            SubprocessConfig(tools_path=tools, isolation="bwrap")
        ),
        "subprocess-none": lambda: SubprocessExecutor(
            SubprocessConfig(tools_path=tools, isolation="none")
        ),
        "subprocess-pooled": lambda: SubprocessExecutor(
            SubprocessConfig(tools_path=tools, isolation="bwrap", warm_pool=1)
        ),
    }


async def pool_refilled(timeout: float = 10.0) -> None:
    """Wait (outside the timed part) until the jailed worker pool has a worker ready."""
    from py_code_mode._private.worker_pool import pool

    for _ in range(int(timeout / 0.01)):
        if pool.waiting():
            return
        await asyncio.sleep(0.01)


async def measure(
    name: str, factory: Callable[[], Executor], base: Path, args: argparse.Namespace
) -> dict[str, Any]:
    storage_dir = base / f"data-{name}"
    # Warm-up start: creates the cached venv (subprocess) once, outside the figures.
    async with Session(FileStorage(storage_dir), factory()) as warm:
        await warm.run("1")

    starts = []
    pooled = name.endswith("-pooled")
    for _ in range(args.starts):
        if pooled:
            await pool_refilled()
        session = Session(FileStorage(storage_dir), factory())
        began = time.perf_counter()
        await session.start()
        starts.append((time.perf_counter() - began) * 1000)
        await session.close()

    figures: dict[str, Any] = {"start": statistics.median(starts)}
    async with Session(FileStorage(storage_dir), factory()) as session:
        await session.add_workflow("noop", "def run(n: int) -> int:\n    return n\n")
        await session.run("_blob = bytes(range(256)) * 400")  # 100 KB
        await session.run("_text = 'x' * 100_000")  # 100 KB
        await session.run("x = 1")
        for _ in range(20):
            await session.run("1+1")
        runs = []
        for _ in range(args.runs):
            began = time.perf_counter()
            result = await session.run("1+1")
            runs.append((time.perf_counter() - began) * 1000)
            assert result.is_ok, result.error
        figures["run_median"] = statistics.median(runs)
        figures["run_p90"] = percentile(runs, 0.9)
        prints = []
        for _ in range(max(20, args.runs // 10)):
            began = time.perf_counter()
            result = await session.run("for i in range(1000): print(i)")
            prints.append((time.perf_counter() - began) * 1000)
            assert result.is_ok, result.error
        figures["print_1000_median"] = statistics.median(prints)

        for label, call in (
            ("tool_cli", "tools.echo.say(text='hi')"),
            ("rpc_tools_list", "tools.list()"),
            ("rpc_exists", "artifacts.exists('x')"),
            ("artifact_100k", "artifacts.save('blob', _blob); artifacts.load('blob')"),
            ("artifact_str_100k", "artifacts.save('text', _text); artifacts.load('text')"),
            ("workflow_invoke", "workflows.invoke('noop', n=1)"),
        ):
            code = textwrap.dedent(TIMED_CALLS).format(calls=args.calls, call=call)
            result = await session.run(code)
            assert result.is_ok, result.error
            samples = [float(s) for s in result.value]
            figures[f"{label}_median"] = statistics.median(samples)
            figures[f"{label}_p90"] = percentile(samples, 0.9)

        began = time.perf_counter()
        timed_out = await session.run("while True:\n    pass", timeout=1)
        figures["timeout_s"] = time.perf_counter() - began
        assert timed_out.error_type == "TimeoutError", timed_out.error
        after = await session.run("x")
        figures["after_timeout"] = "works" if after.is_ok and after.value == 1 else "BROKEN"
        if timed_out.variables_lost:
            again = await session.run("1 + 1")
            figures["after_timeout"] = "works (variables lost)" if again.is_ok else "BROKEN"
    return figures


ROWS = [
    ("session start (cached venv)", "start", "ms", "< 150 ms"),
    ("run('1+1') median", "run_median", "ms", "< 1 ms"),
    ("run('1+1') p90", "run_p90", "ms", ""),
    # A CLI tool call spawns a process in its own bubblewrap jail (~4 ms of bwrap on
    # top of the spawn itself, printed below the table): 1 ms predates the jail.
    ("CLI tool call (echo) median", "tool_cli_median", "ms", "< 15 ms"),
    ("CLI tool call (echo) p90", "tool_cli_p90", "ms", ""),
    ("RPC tools.list() median", "rpc_tools_list_median", "ms", ""),
    ("RPC artifacts.exists() median", "rpc_exists_median", "ms", ""),
    ("RPC artifacts.exists() p90", "rpc_exists_p90", "ms", ""),
    ("print of 1,000 lines (run)", "print_1000_median", "ms", ""),
    ("artifact 100 KB save+load median", "artifact_100k_median", "ms", ""),
    ("artifact 100 KB save+load p90", "artifact_100k_p90", "ms", ""),
    ("artifact 100 KB str save+load", "artifact_str_100k_median", "ms", ""),
    ("workflow invoke median", "workflow_invoke_median", "ms", ""),
    ("workflow invoke p90", "workflow_invoke_p90", "ms", ""),
    ("while True: pass, timeout=1", "timeout_s", "s", "< 1.5 s"),
    ("next run after the timeout", "after_timeout", "", "works"),
]


def show(results: dict[str, dict[str, Any]], rows: list[tuple[str, str, str, str]] = ROWS) -> None:
    """One column per executor, one line per row; ``-`` where an executor has no figure."""
    names = list(results)
    header = f"{'':32} " + " ".join(f"{n:>16}" for n in names) + "   target"
    print(header)
    print("-" * len(header))
    for label, key, unit, target in rows:
        cells = []
        for name in names:
            value = results[name].get(key, "-")
            if isinstance(value, float):
                digits = 3 if unit == "ms" and value < 10 else 2
                cells.append(f"{value:>13.{digits}f} {unit:<2}")
            else:
                cells.append(f"{value:>16}")
        print((f"{label:32} " + " ".join(cells) + f"   {target}").rstrip())


async def tool_jail_cost(count: int) -> tuple[float, float, float]:
    """Median ms of a CLI ``echo`` tool call from the host: jailed, jailed with
    ``network: true`` (launcher and forwarder in the jail), and unjailed; interleaved.
    """
    import os

    from py_code_mode.tools.models import load_cli_tool

    data = {"name": "echo", "command": "echo", "args": ["hi"], "separator": None}
    plain = load_cli_tool(data)
    networked = load_cli_tool({**data, "network": True})
    variants = (("on", plain), ("on", networked), ("off", plain))
    samples: list[list[float]] = [[] for _ in variants]
    try:
        for _ in range(count):
            for (setting, tool), times in zip(variants, samples, strict=True):
                os.environ["PY_CODE_MODE_TOOL_JAIL"] = setting
                began = time.perf_counter()
                await tool.call(None, {})
                times.append((time.perf_counter() - began) * 1000)
    finally:
        os.environ.pop("PY_CODE_MODE_TOOL_JAIL", None)
        await networked.aclose()
    jailed, network, unjailed = (statistics.median(times) for times in samples)
    return jailed, network, unjailed


async def echo_floor(count: int) -> float:
    """Median ms to spawn ``echo`` from the host: the floor under any CLI tool call."""
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            "echo", "hi", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        await proc.communicate()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def import_time_ms(count: int = 7) -> float:
    """Median ms to ``import py_code_mode`` in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import py_code_mode; print(time.perf_counter() - t)"
    )
    samples = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        * 1000
        for _ in range(count)
    ]
    return statistics.median(samples)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=20, help="session starts to time")
    parser.add_argument("--runs", type=int, default=2000, help="trivial runs to time")
    parser.add_argument("--calls", type=int, default=300, help="namespace calls to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
        base = Path(tmp)
        tools = base / "tools"
        tools.mkdir()
        (tools / "echo.yaml").write_text(textwrap.dedent(ECHO_TOOL))
        results = {}
        for name, factory in make_factories(tools).items():
            began = time.perf_counter()
            results[name] = await measure(name, factory, base, args)
            print(f"# {name}: measured in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    print(
        f"python {sys.version.split()[0]}, {args.starts} starts, {args.runs} runs, "
        f"{args.calls} calls per namespace figure\n"
    )
    show(results)
    imported = import_time_ms()
    print(f"\nimport py_code_mode: {imported:.1f} ms, median of 7 fresh interpreters (< 150 ms)")
    jailed, network, unjailed = await tool_jail_cost(min(args.calls, 100))
    print(
        f"\nCLI tool call from the host (echo): jailed {jailed:.2f} ms, jailed with "
        f"network: true {network:.2f} ms (own netns, proxy launcher), unjailed "
        f"{unjailed:.2f} ms median (per-call bubblewrap jail)"
    )
    floor = await echo_floor(args.calls)
    print(
        f"\n(spawning echo alone from the host: {floor:.3f} ms median, "
        "the floor under any CLI tool call)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
