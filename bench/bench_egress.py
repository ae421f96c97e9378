"""Egress proxy overhead on a local HTTP fetch: direct vs through the proxy.

Two views, each an A/B interleaved in one run (medians of per-fetch times):

* host: ``urllib`` fetches of a small page from a local HTTP server, directly and
  through the allowlist proxy (``SandboxEgress``, its own thread, loopback listener);
* jail: the same fetch from agent code in a bwrap-jailed worker, with
  ``network="full"`` (direct to host loopback) and with ``network="allowlist"``
  (worker forwarder -> unix socket -> proxy -> server).

    uv run python bench/bench_egress.py [--rounds 10] [--fetches 20]
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
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests._egress_servers import http_server

from py_code_mode import FileStorage, Session
from py_code_mode.execution import SubprocessConfig, SubprocessExecutor
from py_code_mode.execution._egress import SandboxEgress

EGRESS = {
    "allow": ["index.test"],
    "hosts": {"index.test": "127.0.0.1"},
    "allow_addresses": ["127.0.0.1/32"],
}

FETCHES = """
import time, urllib.request, json
times = []
for _ in range({n}):
    t = time.perf_counter()
    urllib.request.urlopen({url!r}, timeout=10).read()
    times.append(time.perf_counter() - t)
json.dumps(times)
"""


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.2f} ms"


def _fetch(opener: urllib.request.OpenerDirector, url: str) -> float:
    start = time.perf_counter()
    opener.open(url, timeout=10).read()
    return time.perf_counter() - start


def bench_host(port: int, rounds: int, fetches: int) -> tuple[list[float], list[float]]:
    egress = SandboxEgress(**EGRESS)  # type: ignore[arg-type]
    egress.start()
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        proxied = urllib.request.build_opener(urllib.request.ProxyHandler({"http": egress.url}))
        a: list[float] = []
        b: list[float] = []
        for _ in range(rounds * fetches):
            a.append(_fetch(direct, f"http://127.0.0.1:{port}/"))
            b.append(_fetch(proxied, f"http://index.test:{port}/"))
        return a, b
    finally:
        egress.close()


async def bench_jail(port: int, rounds: int, fetches: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        full = Session(
            storage=FileStorage(Path(tmp) / "a"),
            executor=SubprocessExecutor(SubprocessConfig(isolation="bwrap", network="full")),
        )
        allow = Session(
            storage=FileStorage(Path(tmp) / "b"),
            executor=SubprocessExecutor(
                SubprocessConfig(isolation="bwrap", network="allowlist", **EGRESS)  # type: ignore[arg-type]
            ),
        )
        async with full, allow:
            a: list[float] = []
            b: list[float] = []
            direct_code = FETCHES.format(n=fetches, url=f"http://127.0.0.1:{port}/")
            proxy_code = FETCHES.format(n=fetches, url=f"http://index.test:{port}/")
            for _ in range(rounds):
                a += json.loads(str((await full.run(direct_code)).value))
                b += json.loads(str((await allow.run(proxy_code)).value))
            return a, b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--fetches", type=int, default=20)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    with http_server() as served:
        direct, proxied = bench_host(served.port, args.rounds, args.fetches)
        print(f"host  fetch direct        {_ms(direct)}")
        print(f"host  fetch through proxy {_ms(proxied)}")
        direct, proxied = asyncio.run(bench_jail(served.port, args.rounds, args.fetches))
        print(f"jail  fetch direct (full) {_ms(direct)}")
        print(f"jail  fetch allowlist     {_ms(proxied)}")


if __name__ == "__main__":
    main()
