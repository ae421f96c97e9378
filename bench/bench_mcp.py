"""Startup and round-trip figures of py-code-mode-mcp over stdio.

Measures, with raw JSON-RPC lines on the server's pipes (no client SDK overhead):

* startup: wall time from spawning the server process to the ``initialize``
  answer arriving (target: under 1 s);
* run_code: median round trip of ``run_code("1+1")`` on a warm session
  (target: under 5 ms);
* tools/list: median round trip of a ``tools/list`` request.

Usage::

    uv run python bench/bench_mcp.py [--executor in-process|subprocess] [--starts 5] [--calls 200]

Every wait is bounded; the script exits non-zero if the server misbehaves.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from py_code_mode.mcp_server.options import default_executor

READ_TIMEOUT = 120.0


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far; None where unknown.

    Unlike wall time it hardly depends on what else the machine is doing.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A server process spoken to with newline-delimited JSON-RPC."""

    def __init__(self, base: Path, executor: str | None) -> None:
        args = [sys.executable, "-m", "py_code_mode.mcp_server", "--base", str(base)]
        if executor:
            args += ["--executor", executor]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._buf = b""
        self._next_id = 0
        self.startup_cpu: float | None = None

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        self.send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        while True:
            message = self._read_message()
            if message.get("id") == self._next_id:
                return message

    def _read_message(self) -> dict[str, Any]:
        deadline = time.monotonic() + READ_TIMEOUT
        assert self.proc.stdout is not None
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise TimeoutError("the server did not answer in time")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"the server exited (code {self.proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    def initialize(self) -> float:
        answer = self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        )
        elapsed = time.perf_counter() - self.started
        self.startup_cpu = process_cpu_seconds(self.proc.pid)
        if "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return elapsed

    def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": name, "arguments": arguments})
        result: dict[str, Any] = answer["result"]
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._sel.close()


def measure_stdio(
    executor: str | None, starts: int, calls: int, startup_cpu: list[float] | None = None
) -> tuple[list[float], float, list[float], list[float]]:
    """Startup seconds per start, first run_code ms, run_code and tools/list round trips (ms).

    ``startup_cpu``, when given, receives the server's CPU seconds up to each
    ``initialize`` answer.
    """
    with tempfile.TemporaryDirectory(prefix="pcm-bench-") as tmp:
        base = Path(tmp) / "base"
        startup: list[float] = []
        for _ in range(starts):
            server = Server(base, executor)
            try:
                startup.append(server.initialize())
                if startup_cpu is not None and server.startup_cpu is not None:
                    startup_cpu.append(server.startup_cpu)
            finally:
                server.close()

        server = Server(base, executor)
        try:
            server.initialize()
            first_started = time.perf_counter()
            first = server.call("run_code", {"code": "1+1"})
            first_ms = (time.perf_counter() - first_started) * 1000
            if first.get("structuredContent", {}).get("value") != 2:
                raise RuntimeError(f"unexpected run_code result: {first}")
            for _ in range(10):
                server.call("run_code", {"code": "1+1"})
                server.request("tools/list", {})
            trips: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                server.call("run_code", {"code": "1+1"})
                trips.append((time.perf_counter() - started) * 1000)
            listings: list[float] = []
            for _ in range(calls):
                started = time.perf_counter()
                answer = server.request("tools/list", {})
                listings.append((time.perf_counter() - started) * 1000)
                if not answer.get("result", {}).get("tools"):
                    raise RuntimeError(f"unexpected tools/list answer: {answer}")
        finally:
            server.close()
    return startup, first_ms, trips, listings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", default=None, help="executor kind (default: the server's)")
    parser.add_argument("--starts", type=int, default=5, help="server starts to time")
    parser.add_argument("--calls", type=int, default=200, help="run_code calls to time")
    args = parser.parse_args()
    startup, first_ms, trips, listings = measure_stdio(args.executor, args.starts, args.calls)

    figures = {
        "executor": args.executor or f"{default_executor()} (default)",
        "startup_to_initialize_s": {
            "median": round(statistics.median(startup), 3),
            "min": round(min(startup), 3),
            "max": round(max(startup), 3),
            "n": len(startup),
        },
        "first_run_code_ms": round(first_ms, 1),
        "tools_list_ms": {
            "median": round(statistics.median(listings), 3),
            "n": len(listings),
        },
        "run_code_1plus1_ms": {
            "median": round(statistics.median(trips), 3),
            "p90": round(sorted(trips)[int(len(trips) * 0.9) - 1], 3),
            "n": len(trips),
        },
    }
    print(
        f"executor {figures['executor']}: initialize answered after "
        f"{statistics.median(startup):.3f} s (median of {len(startup)}, target < 1 s); "
        f"first run_code {first_ms:.0f} ms; run_code('1+1') median "
        f"{statistics.median(trips):.2f} ms over {len(trips)} calls (target < 5 ms)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
