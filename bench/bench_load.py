"""Many agents at once: N MCP clients over streamable HTTP, one server or two replicas.

Each client opens its own MCP session (so its own execution session and worker)
and loops over three ``run_code`` calls for a fixed time:

* ``1+1`` (the round trip through HTTP, the session pool and the worker);
* a tool call from agent code (``tools.echo(text='hi')``, a CLI tool run on the host);
* a 100 KB artifact saved and loaded back from agent code (Redis storage).

Printed per scenario: calls per second, p50/p99 latency per kind of call, errors
(must be 0), CPU milliseconds per call spent in the server process, in the workers
and in this client process (what bounds throughput on a machine of C cores: about
C x 1000 / their sum calls per second; with N clients looping back to back, latency
is then at least N / that rate), and memory per session: the server's share (PSS
growth of the server process divided by N) and the worker's (PSS of the worker
processes divided by N),
measured once every session is open and idle, and again after the load.

Scenarios: N = 1, 10, 50 against one server, then the same against two replicas
behind the real haproxy of ``deploy/haproxy.cfg`` (both replicas on one Redis).
All clients run in this one process, which competes with the servers for the same
cores; the figures are end to end as a client sees them.

Budgets (2-core machine): 50 clients with 0 errors; p99 ``run_code('1+1')`` <= 50 ms;
idle session <= 30 MB.

Usage::

    uv run python bench/bench_load.py [--clients 1,10,50] [--seconds 5]
                                      [--executor subprocess] [--no-replicas]

Needs redis-server (and haproxy for the replica rows) on PATH; listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_executors import ECHO_TOOL, percentile  # noqa: E402
from tests._redis import RedisServer  # noqa: E402
from tests._replicas import haproxy, haproxy_binary, wait_listening  # noqa: E402
from tests._tcp import free_port  # noqa: E402

TOKEN = "bench-load-token-0123456789abcdef"
KINDS = ("1+1", "tool", "artifact 100KB")
CALL_TIMEOUT = 120.0


def code_for(kind: str, client: int) -> str:
    if kind == "1+1":
        return "1+1"
    if kind == "tool":
        return "tools.echo(text='hi')"
    return f"artifacts.save('load-{client}', 'x' * 100_000)\nlen(artifacts.load('load-{client}'))"


# -- processes and memory ----------------------------------------------------------


def children_of() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree = children_of()
    found, todo = [], list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(tree.get(child, []))
    return found


def pss_mb(pid: int) -> float:
    """Proportional set size in MB (shared pages split between their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of ``pids`` so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def server_cpu(servers: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """CPU seconds of the server processes, and of their workers (descendants)."""
    kids = [k for p in servers for k in descendants(p.pid)]
    return cpu_seconds([p.pid for p in servers]), cpu_seconds(kids)


@dataclass
class Memory:
    server_mb: float
    workers_mb: float
    workers: int


def memory(servers: list[subprocess.Popen[bytes]]) -> Memory:
    server = sum(pss_mb(p.pid) for p in servers)
    kids = [k for p in servers for k in descendants(p.pid)]
    return Memory(server, sum(pss_mb(k) for k in kids), len(kids))


@contextlib.contextmanager
def server(
    base: Path, redis_url: str, executor: str, log: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PY_CODE_MODE_")}
    env["PY_CODE_MODE_TOKEN"] = TOKEN
    args = [
        sys.executable, "-m", "py_code_mode.mcp_server",
        "--transport", "http", "--port", str(port), "--base", str(base),
        "--redis", redis_url, "--prefix", "bench-load", "--executor", executor,
        "--max-sessions", "64", "--max-runs", "64", "--idle-timeout", "0",
    ]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_listening(port, process)
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# -- clients -----------------------------------------------------------------------


@dataclass
class Tally:
    kinds: tuple[str, ...] = KINDS
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.latencies = {k: [] for k in self.kinds}


@contextlib.asynccontextmanager
async def client_session(url: str) -> AsyncIterator[Any]:
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write, read_timeout_seconds=CALL_TIMEOUT) as s,
    ):
        await s.initialize()
        yield s


class RawSession:
    """An MCP session spoken with plain HTTP POSTs of pre-encoded JSON-RPC.

    The load generator shares the cores with the server; the SDK client spends about
    as much CPU per call as the server does, so with it the bench partly measures
    itself. This client sends the same requests with a fraction of that CPU.
    """

    def __init__(self, http: Any, url: str) -> None:
        self._http = http
        self._url = url
        self._headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        self._next_id = 0

    async def _post(self, body: bytes) -> dict[str, Any] | None:
        response = await self._http.post(self._url, content=body, headers=self._headers)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self._headers["mcp-session-id"] = response.headers["mcp-session-id"]
        if response.status_code == 202:
            return None
        text = response.text
        if not response.headers.get("content-type", "").startswith("application/json"):
            # An SSE stream: the answer is its last event that carries an id.
            events = [line[5:] for line in text.splitlines() if line.startswith("data:")]
            text = next((e for e in reversed(events) if '"id"' in e), "")
        if text:
            answer: dict[str, Any] = json.loads(text)
            return answer
        raise RuntimeError(f"no JSON-RPC answer in {text[:200]!r}")

    async def initialize(self) -> None:
        await self._post(
            json.dumps({
                "jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "bench-load", "version": "0"},
                },
            }).encode()
        )  # fmt: skip
        await self._post(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')

    def encode_call(self, code: str) -> bytes:
        self._next_id += 1
        return json.dumps({
            "jsonrpc": "2.0", "id": self._next_id, "method": "tools/call",
            "params": {"name": "run_code", "arguments": {"code": code}},
        }).encode()  # fmt: skip

    async def call(self, body: bytes) -> str | None:
        """Send one encoded tools/call; the problem, or None when it succeeded."""
        answer = await self._post(body)
        result = (answer or {}).get("result")
        if result is None:
            return str(answer)[:200]
        if result.get("isError"):
            return str(result.get("content"))[:200]
        data = result.get("structuredContent") or {}
        return str(data["error"])[:200] if data.get("error") else None


@contextlib.asynccontextmanager
async def raw_session(url: str) -> AsyncIterator[RawSession]:
    import httpx

    async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as http:
        session = RawSession(http, url)
        await session.initialize()
        yield session


def failure(result: Any) -> str | None:
    if result.is_error:
        return " ".join(getattr(c, "text", "") for c in result.content)[:200]
    data = result.structured_content or {}
    if data.get("error"):
        return str(data["error"])[:200]
    return None


async def one_raw_client(
    url: str, index: int, ready: asyncio.Barrier, go: asyncio.Event, stop_at: list[float],
    tally: Tally,
) -> None:  # fmt: skip
    try:
        async with raw_session(url) as session:
            if (problem := await session.call(session.encode_call("1"))) is not None:
                tally.errors.append(f"warm-up: {problem}")
            await ready.wait()
            await go.wait()
            while time.monotonic() < stop_at[0]:
                for kind in tally.kinds:
                    body = session.encode_call(code_for(kind, index))
                    started = time.perf_counter()
                    try:
                        problem = await session.call(body)
                    except Exception as exc:  # noqa: BLE001 - counted, not raised
                        problem = f"{type(exc).__name__}: {exc}"
                    elapsed = (time.perf_counter() - started) * 1000
                    if problem is None:
                        tally.latencies[kind].append(elapsed)
                    else:
                        tally.errors.append(f"{kind}: {problem}")
            await ready.wait()
    except Exception as exc:  # noqa: BLE001 - counted, not raised
        tally.errors.append(f"session: {type(exc).__name__}: {exc!r}"[:300])
        await ready.abort()


async def one_client(
    url: str, index: int, ready: asyncio.Barrier, go: asyncio.Event, stop_at: list[float],
    tally: Tally,
) -> None:  # fmt: skip
    try:
        async with client_session(url) as session:
            warm = await session.call_tool("run_code", {"code": "1"})
            if (problem := failure(warm)) is not None:
                tally.errors.append(f"warm-up: {problem}")
            await ready.wait()
            await go.wait()
            while time.monotonic() < stop_at[0]:
                for kind in tally.kinds:
                    started = time.perf_counter()
                    try:
                        result = await session.call_tool(
                            "run_code", {"code": code_for(kind, index)}
                        )
                        problem = failure(result)
                    except Exception as exc:  # noqa: BLE001 - counted, not raised
                        problem = f"{type(exc).__name__}: {exc}"
                    elapsed = (time.perf_counter() - started) * 1000
                    if problem is None:
                        tally.latencies[kind].append(elapsed)
                    else:
                        tally.errors.append(f"{kind}: {problem}")
            await ready.wait()  # hold the session open until every client is done
    except Exception as exc:  # noqa: BLE001 - counted, not raised
        tally.errors.append(f"session: {type(exc).__name__}: {exc!r}"[:300])
        await ready.abort()


@dataclass
class Load:
    """How the clients load the server."""

    seconds: float = 5.0
    kinds: tuple[str, ...] = KINDS
    raw: bool = False
    py_spy: Path | None = None
    """Where to write py-spy's collapsed stacks of the server during the load."""


def start_py_spy(load: Load, name: str, servers: list[subprocess.Popen[bytes]]) -> Any:
    if load.py_spy is None:
        return None
    load.py_spy.mkdir(parents=True, exist_ok=True)
    out = load.py_spy / (name.replace(" ", "_").replace(",", "") + ".txt")
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(servers[0].pid), "--duration",
         str(max(1, int(load.seconds) - 1)), "--rate", "250", "--format", "raw",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def scenario(
    url: str, clients: int, load: Load, servers: list[subprocess.Popen[bytes]], name: str = ""
) -> dict[str, Any]:
    seconds = load.seconds
    tally = Tally(kinds=load.kinds)
    before = memory(servers)
    ready = asyncio.Barrier(clients + 1)
    go = asyncio.Event()
    stop_at = [0.0]
    client = one_raw_client if load.raw else one_client
    tasks = [asyncio.create_task(client(url, i, ready, go, stop_at, tally)) for i in range(clients)]
    try:
        async with asyncio.timeout(180):
            await ready.wait()  # every session open and warmed up
    except (asyncio.BrokenBarrierError, TimeoutError):
        await ready.abort()
        go.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"errors": len(tally.errors) or 1, "first error": (tally.errors or ["?"])[0]}
    await asyncio.sleep(1.0)
    idle = memory(servers)
    stop_at[0] = time.monotonic() + seconds
    cpu_before = server_cpu(servers)
    client_before = sum(os.times()[:2])
    started = time.monotonic()
    spy = start_py_spy(load, name, servers)
    go.set()
    with contextlib.suppress(asyncio.BrokenBarrierError):
        await ready.wait()
    elapsed = time.monotonic() - started
    if spy is not None:
        await asyncio.to_thread(spy.wait, 60)
    client_cpu = sum(os.times()[:2]) - client_before
    cpu_after = server_cpu(servers)
    loaded = memory(servers)
    await asyncio.gather(*tasks, return_exceptions=True)
    calls = sum(len(v) for v in tally.latencies.values())
    per_call = 1000 / max(calls, 1)
    row: dict[str, Any] = {
        "calls/s": calls / elapsed,
        "CPU/call: server": (cpu_after[0] - cpu_before[0]) * per_call,
        "CPU/call: worker": (cpu_after[1] - cpu_before[1]) * per_call,
        "CPU/call: clients": client_cpu * per_call,
        "errors": len(tally.errors),
        "server MB/session (idle)": (idle.server_mb - before.server_mb) / clients,
        "worker MB/session (idle)": (idle.workers_mb - before.workers_mb) / clients,
        "server MB/session (load)": (loaded.server_mb - before.server_mb) / clients,
        "worker MB/session (load)": (loaded.workers_mb - before.workers_mb) / clients,
        "worker processes": idle.workers - before.workers,
    }
    for kind, samples in tally.latencies.items():
        if samples:
            row[f"p50 {kind}"] = percentile(samples, 0.5)
            row[f"p99 {kind}"] = percentile(samples, 0.99)
    if tally.errors:
        row["first error"] = tally.errors[0]
    return row


ROWS = [
    ("calls/s", "", ""),
    ("errors", "", "0"),
    ("CPU/call: server", "ms", ""),
    ("CPU/call: worker", "ms", ""),
    ("CPU/call: clients", "ms", ""),
    *[(f"p{q} {kind}", "ms", "<= 50 ms" if (q, kind) == (99, "1+1") else "")
      for kind in KINDS for q in (50, 99)],
    ("server MB/session (idle)", "MB", ""),
    ("worker MB/session (idle)", "MB", "sum <= 30 MB"),
    ("server MB/session (load)", "MB", ""),
    ("worker MB/session (load)", "MB", ""),
    ("worker processes", "", ""),
]  # fmt: skip


def show(results: dict[str, dict[str, Any]]) -> None:
    names = list(results)
    width = max(14, *(len(n) for n in names))
    header = f"{'':28} " + " ".join(f"{n:>{width}}" for n in names) + "   budget"
    print(header)
    print("-" * len(header))
    for label, unit, budget in ROWS:
        cells = []
        for name in names:
            value = results[name].get(label, "-")
            if isinstance(value, float) and unit:
                cells.append(f"{value:>{width - 3}.1f} {unit:<2}")
            elif isinstance(value, float):
                cells.append(f"{value:>{width}.1f}")
            else:
                cells.append(f"{value!s:>{width}}")
        print((f"{label:28} " + " ".join(cells) + f"   {budget}").rstrip())
    for name, row in results.items():
        if "first error" in row:
            print(f"{name}: first error: {row['first error']}")


async def one_server(clients: int, load: Load, executor: str = "subprocess") -> dict[str, Any]:
    """One scenario row: ``clients`` agents on one server (what ``run_all --load`` shows)."""
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        base = work / "base"
        (base / "tools").mkdir(parents=True)
        (base / "tools" / "echo.yaml").write_text(ECHO_TOOL)
        with (
            RedisServer(work / "redis") as redis,
            server(base, redis.url, executor, work / "servers.log") as (port, process),
        ):
            return await scenario(f"http://127.0.0.1:{port}/mcp", clients, load, [process])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="1,10,50", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per scenario")
    parser.add_argument("--executor", default="subprocess", help="executor of the servers")
    parser.add_argument("--no-replicas", action="store_true", help="skip the haproxy rows")
    parser.add_argument("--only-replicas", action="store_true", help="skip the 1-server rows")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"calls each client loops over ({','.join(KINDS)})"
    )
    parser.add_argument(
        "--raw", action="store_true",
        help="clients POST pre-encoded JSON-RPC with httpx instead of the SDK client",
    )  # fmt: skip
    parser.add_argument("--py-spy", type=Path, help="folder for py-spy stacks of the server")
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(","))
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown --kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    load = Load(seconds=args.seconds, kinds=kinds, raw=args.raw, py_spy=args.py_spy)
    counts = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        work = Path(tmp)
        base = work / "base"
        (base / "tools").mkdir(parents=True)
        (base / "tools" / "echo.yaml").write_text(ECHO_TOOL)
        results: dict[str, dict[str, Any]] = {}
        with RedisServer(work / "redis") as redis:
            log = work / "servers.log"
            with server(base, redis.url, args.executor, log) as (port, process):
                if args.only_replicas:
                    counts_one: list[int] = []
                else:
                    counts_one = counts
                url = f"http://127.0.0.1:{port}/mcp"
                for n in counts_one:
                    name = f"1 server, N={n}"
                    results[name] = await scenario(url, n, load, [process], name)
                    print(f"done: {name}", file=sys.stderr)
            if not args.no_replicas and haproxy_binary() is not None:
                with (
                    server(base, redis.url, args.executor, log) as (p1, one),
                    server(base, redis.url, args.executor, log) as (p2, two),
                    haproxy([p1, p2], work / "haproxy") as balancer,
                ):
                    for n in counts:
                        name = f"2 replicas, N={n}"
                        results[name] = await scenario(balancer.url, n, load, [one, two], name)
                        print(f"done: {name}", file=sys.stderr)
            elif not args.no_replicas:
                print("haproxy is not on PATH: replica rows skipped", file=sys.stderr)
    print(
        f"\nbench_load: {args.executor} executor, {args.seconds:g} s of load per scenario, "
        f"calls {'/'.join(kinds)}, {'raw httpx' if args.raw else 'SDK'} clients, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; memory is PSS\n"
    )
    show(results)


if __name__ == "__main__":
    asyncio.run(main())
