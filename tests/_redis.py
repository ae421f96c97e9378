"""A real ``redis-server`` for tests: started on a free port, stopped afterwards.

``redis_url`` (session scope) is one server shared by all tests; every test keeps to
its own key prefix. Set ``PY_CODE_MODE_TEST_REDIS_URL`` to use an existing server
instead. Tests that stop, restart or configure a server start their own
:class:`RedisServer` and skip when the binary is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from py_code_mode.storage.protocol import StorageBackend
from tests._tcp import free_port

URL_ENV = "PY_CODE_MODE_TEST_REDIS_URL"
MISSING = (
    "redis-server is not on PATH: install it (apt-get install -y redis-server) "
    f"or set {URL_ENV}=redis://host:port/db to run the Redis tests"
)


def redis_binary() -> str | None:
    """Path of redis-server, or None."""
    return shutil.which("redis-server")


class RedisServer:
    """One redis-server process on 127.0.0.1, restartable on the same port.

    Args:
        workdir: Holds the log and, when ``persistent``, the append-only file.
        persistent: Keep data across :meth:`stop` / :meth:`start` (AOF, fsync always).
        password: ``requirepass`` of the server.
    """

    def __init__(
        self, workdir: Path, *, persistent: bool = False, password: str | None = None
    ) -> None:
        binary = redis_binary()
        if binary is None:
            pytest.skip(MISSING)
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.process.poll() is not None:
                log = self.workdir / "redis.log"
                text = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {text}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer in time")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        """Shut the server down (SIGTERM: a clean shutdown that flushes the AOF)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # -NOAUTH: up, with a password; -LOADING: still reading the AOF, not ready.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis server for the whole test session."""
    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, persistent server that only this test uses (it may stop and restart it)."""
    with RedisServer(tmp_path / "redis", persistent=True) as server:
        yield server


def prefix_for(place: object) -> str:
    """A key prefix derived from a test's place: same place, same prefix."""
    return "t-" + hashlib.sha256(str(place).encode()).hexdigest()[:16]


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key under ``prefix`` (best effort; for servers shared with others)."""
    import redis

    with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)


async def redis_backend(place: Path, request: pytest.FixtureRequest) -> StorageBackend:
    """Contract-suite factory: a RedisStorage whose prefix is derived from ``place``."""
    from py_code_mode.storage.redis import RedisStorage

    url: str = request.getfixturevalue("redis_url")
    prefix = prefix_for(place)
    if os.environ.get(URL_ENV):
        request.addfinalizer(lambda: delete_prefix(url, prefix))
    backend = RedisStorage(url, prefix=prefix)
    await backend.open()
    return backend
