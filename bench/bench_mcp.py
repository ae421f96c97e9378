"""Startup and round-trip figures of py-code-mode-mcp over stdio.

Measures, with raw JSON-RPC lines on the server's pipes (no client SDK overhead):

* startup: wall time from spawning the server process to the ``initialize``
  answer arriving (target: under 1 s), with the modules' bytecode cached as an
  installed package has it, and once for a first start that compiles every module;
* run_code: median round trip of ``run_code("1+1")`` on a warm session
  (target: under 5 ms);
* tools/list: median round trip of a ``tools/list`` request;
* big output: ``run_code`` printing 10,000 lines: the server's own share of the
  round trip (round trip minus the run's ``execution_time_ms``: capping, formatting,
  encoding; target: under 20 ms) and the size of the whole JSON-RPC reply (target:
  at most 25,000 characters). The full output's artifact is written after the reply,
  in the pause an agent takes before its next call, which the bench leaves.

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
from typing import Any, NamedTuple

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

    def __init__(self, base: Path, executor: str | None, *, bytecode: Path | None = None) -> None:
        """Start the server.

        Args:
            base: The library folder.
            executor: ``--executor``, or None for the server's default.
            bytecode: Where the server caches compiled modules (``PYTHONPYCACHEPREFIX``);
                None to keep them beside the sources, as an installed package does.
        """
        args = [sys.executable, "-m", "py_code_mode.mcp_server", "--base", str(base)]
        if executor:
            args += ["--executor", executor]
        # Bytecode is written as an installed package's first start writes it (pip and
        # `uv tool install --compile-bytecode` write it at install time): a
        # PYTHONDONTWRITEBYTECODE of the shell would time compiling every module on
        # every start, which no user's second start pays.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.pop("PYTHONPYCACHEPREFIX", None)
        if bytecode is not None:
            env["PYTHONPYCACHEPREFIX"] = str(bytecode)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**env, "PYTHONUNBUFFERED": "1"},
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


class StdioFigures(NamedTuple):
    """What :func:`measure_stdio` measured."""

    startup: list[float]
    first_start: float
    """Seconds to ``initialize`` with no bytecode cached: every module compiled."""
    first_ms: float
    trips: list[float]
    listings: list[float]
    big_server: list[float]
    big_chars: int


def measure_stdio(
    executor: str | None, starts: int, calls: int, startup_cpu: list[float] | None = None
) -> StdioFigures:
    """Startup seconds, first run_code ms, round trips (ms) and the 10k-line run's figures.

    ``startup_cpu``, when given, receives the server's CPU seconds up to each
    ``initialize`` answer.
    """
    with tempfile.TemporaryDirectory(prefix="pcm-bench-") as tmp:
        base = Path(tmp) / "base"
        server = Server(base, executor, bytecode=Path(tmp) / "no-bytecode-yet")
        try:
            first_start = server.initialize()
        finally:
            server.close()
        Server(base, executor).close()  # writes any bytecode still missing beside the sources
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
            big_code = "for i in range(10_000): print(f'line {i}')"
            server.call("run_code", {"code": big_code})
            big_server: list[float] = []
            big_chars = 0
            for _ in range(max(5, calls // 20)):
                # An agent reads a reply before its next call; the full output is saved
                # (fsynced) in that gap, so the pause keeps that write out of the figure.
                time.sleep(0.2)
                started = time.perf_counter()
                answer = server.request(
                    "tools/call", {"name": "run_code", "arguments": {"code": big_code}}
                )
                trip = (time.perf_counter() - started) * 1000
                ran = answer["result"].get("structuredContent", {}).get("execution_time_ms", 0.0)
                big_server.append(trip - float(ran))
                big_chars = len(json.dumps(answer))
        finally:
            server.close()
    return StdioFigures(startup, first_start, first_ms, trips, listings, big_server, big_chars)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executor", default=None, help="executor kind (default: the server's)")
    parser.add_argument("--starts", type=int, default=5, help="server starts to time")
    parser.add_argument("--calls", type=int, default=200, help="run_code calls to time")
    args = parser.parse_args()
    startup, first_start, first_ms, trips, listings, big_server, big_chars = measure_stdio(
        args.executor, args.starts, args.calls
    )

    figures = {
        "executor": args.executor or f"{default_executor()} (default)",
        "startup_to_initialize_s": {
            "median": round(statistics.median(startup), 3),
            "min": round(min(startup), 3),
            "max": round(max(startup), 3),
            "n": len(startup),
        },
        "first_start_no_bytecode_s": round(first_start, 3),
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
        "big_output_10k_lines": {
            "server_side_ms_median": round(statistics.median(big_server), 2),
            "reply_chars": big_chars,
            "n": len(big_server),
        },
    }
    print(
        f"executor {figures['executor']}: initialize answered after "
        f"{statistics.median(startup):.3f} s (median of {len(startup)}, target < 1 s; "
        f"{first_start:.3f} s on a first start that compiles every module); "
        f"first run_code {first_ms:.0f} ms; run_code('1+1') median "
        f"{statistics.median(trips):.2f} ms over {len(trips)} calls (target < 5 ms); "
        f"10k-line run: {statistics.median(big_server):.1f} ms server-side (target <= 20 ms), "
        f"reply {big_chars} characters (target <= 25,000)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
