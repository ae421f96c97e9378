"""Replicas of the HTTP server behind the real haproxy of ``deploy/haproxy.cfg``.

Used by the replica tests and by ``bench/bench_load.py``. Everything listens on
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests._tcp import free_port

REPO = Path(__file__).resolve().parent.parent
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
MISSING_HAPROXY = (
    "haproxy is not on PATH: install it (apt-get install -y haproxy; .ci/run does) "
    "to run the replica tests"
)


def haproxy_binary() -> str | None:
    """Path of haproxy, or None."""
    return shutil.which("haproxy")


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Return once 127.0.0.1:``port`` accepts; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listened on port {port} within {timeout} s") from None
            time.sleep(0.05)


@dataclass
class Balancer:
    """A running haproxy: its URL and process."""

    url: str
    port: int
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def haproxy(replica_ports: list[int], workdir: Path) -> Iterator[Balancer]:
    """haproxy with ``deploy/haproxy.cfg`` in front of two replicas on 127.0.0.1."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError(MISSING_HAPROXY)
    if len(replica_ports) != 2:
        raise ValueError("deploy/haproxy.cfg names two replicas")
    port = free_port()
    env = {
        **os.environ,
        "LISTEN": f"127.0.0.1:{port}",
        "REPLICA1": f"127.0.0.1:{replica_ports[0]}",
        "REPLICA2": f"127.0.0.1:{replica_ports[1]}",
        "STATS": f"127.0.0.1:{free_port()}",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    log = (workdir / "haproxy.log").open("wb")
    process = subprocess.Popen(
        [binary, "-db", "-f", str(HAPROXY_CONFIG)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, process)
        yield Balancer(f"http://127.0.0.1:{port}/mcp", port, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        log.close()
