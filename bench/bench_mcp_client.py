"""Round trips of py-code-mode-mcp over stdio as an MCP SDK client sees them.

``bench_mcp.py`` speaks raw JSON-RPC lines, so its figures are the server's alone.
Agents reach the server through an SDK client, whose own encoding and validation are
part of every call they make; this script measures ``run_code('1+1')`` and
``tools/list`` through ``mcp.ClientSession`` of whichever SDK it runs under. Run it
with the interpreter of a venv that has mcp 1.x to get the 1.x client's figure; the
server runs under ``--server-python`` (the project's venv), so both majors are
measured against the same server.

The script imports only the SDK and the stdlib, so it runs in a venv that holds
nothing but ``mcp``::

    uv venv /tmp/mcp1 && uv pip install --python /tmp/mcp1 'mcp==1.21.0' 'typing-inspection==0.4.0'
    /tmp/mcp1/bin/python bench/bench_mcp_client.py --server-python .venv/bin/python

Prints one JSON line: the SDK version, medians and p90s in milliseconds. Every wait is
bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

CALL_TIMEOUT = 120.0


def summary(samples: list[float]) -> dict[str, float | int]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[int(len(ordered) * 0.9) - 1], 3),
        "n": len(ordered),
    }


def read_timeout() -> Any:
    """The client's read timeout in the type its SDK major takes."""
    major = int(version("mcp").split(".")[0])
    return timedelta(seconds=CALL_TIMEOUT) if major < 2 else CALL_TIMEOUT


async def measure(server_python: str, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pcm-bench-client-") as tmp:
        params = StdioServerParameters(
            command=server_python,
            args=["-m", "py_code_mode.mcp_server", "--base", str(Path(tmp) / "base")],
            # The SDK passes the server only a few variables: keep this shell's
            # PYTHONPATH and bytecode settings, so A/B runs can point it elsewhere.
            env={k: v for k, v in os.environ.items() if k.startswith("PYTHON")},
        )
        with anyio.fail_after(CALL_TIMEOUT * 4):
            async with (
                stdio_client(params) as (read, write),
                ClientSession(read, write, read_timeout_seconds=read_timeout()) as session,
            ):
                await session.initialize()
                first = await session.call_tool("run_code", {"code": "1+1"})
                # The field is structured_content in 2.x and structuredContent in 1.x.
                data = getattr(first, "structured_content", None) or getattr(
                    first, "structuredContent", None
                )
                if (data or {}).get("value") != 2:
                    raise RuntimeError(f"unexpected run_code result: {first}")
                for _ in range(20):
                    await session.call_tool("run_code", {"code": "1+1"})
                    await session.list_tools()
                trips: list[float] = []
                for _ in range(calls):
                    started = time.perf_counter()
                    await session.call_tool("run_code", {"code": "1+1"})
                    trips.append((time.perf_counter() - started) * 1000)
                listings: list[float] = []
                for _ in range(calls):
                    started = time.perf_counter()
                    listed = await session.list_tools()
                    listings.append((time.perf_counter() - started) * 1000)
                    if not listed.tools:
                        raise RuntimeError("tools/list answered no tools")
    return {
        "mcp_client": version("mcp"),
        "run_code_1plus1_ms": summary(trips),
        "tools_list_ms": summary(listings),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server-python", default=sys.executable, help="interpreter that has py-code-mode"
    )
    parser.add_argument("--calls", type=int, default=300, help="timed calls of each kind")
    args = parser.parse_args()
    figures = anyio.run(measure, args.server_python, args.calls)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
