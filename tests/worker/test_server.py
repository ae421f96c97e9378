"""The worker process on its own: transports, RPC, interrupts, limits, host loss.

The worker is copied out of the package and started with a bare ``python3`` in
isolated mode, as a container would run it: no py_code_mode, no host library.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from py_code_mode.worker import wire

WORKER_SOURCE = Path(wire.__file__).parent
PACKAGE = "copied_worker"
BOOT = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    f"from {PACKAGE}.server import main;sys.exit(main(sys.argv[2:]))"
)


def bare_python() -> str:
    """A python3 >= 3.11 outside the project's venv when the machine has one."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.stdout.strip() == "True":
                return candidate
    return sys.executable


@pytest.fixture(scope="module")
def worker_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="worker-copy-"))
    root.chmod(0o755)  # readable by the unprivileged user of the limits test
    shutil.copytree(WORKER_SOURCE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


class StdioWorker:
    """A worker started with ``--stdio``, spoken to with bounded waits."""

    def __init__(self, root: Path, prefix: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), bare_python(), "-I", "-c", BOOT, str(root), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd=root,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        self._buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        wire.write_frame(self._in, wire.encode_message(message))

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise TimeoutError("the worker did not answer in time")
            chunk = os.read(self._out, 65536)
            if not chunk:
                raise EOFError("the worker closed its output")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        (length,) = wire._HEADER.unpack(self._read(4, deadline))
        return wire.decode_body(self._read(length, deadline))

    def recv_kind(self, *kinds: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            message = self.recv(timeout)
            if message["kind"] in kinds:
                return message

    def configure(self, **fields: Any) -> dict[str, Any]:
        self.send({"kind": "configure", **fields})
        return self.recv_kind("ready")

    def run(self, run_id: int, code: str) -> dict[str, Any]:
        self.send({"kind": "run", "id": run_id, "code": code})
        return self.recv_kind("result")["outcome"]  # type: ignore[no-any-return]

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def worker(worker_root: Path) -> Iterator[StdioWorker]:
    started = StdioWorker(worker_root)
    hello = started.recv()
    assert hello["kind"] == "hello"
    assert hello["version"] == wire.PROTOCOL_VERSION
    yield started
    started.close()


def test_the_worker_runs_under_a_bare_python_without_py_code_mode(worker: StdioWorker) -> None:
    assert worker.configure(output_limit=1000)["warnings"] is not None
    outcome = worker.run(1, "import sys\nprint('hi')\nsys.version_info >= (3, 11)")
    assert outcome == {"value": True, "stdout": "hi\n", "error": None, "error_type": None}
    missing = worker.run(2, "import py_code_mode")
    assert missing["error_type"] == "ModuleNotFoundError"


def test_namespace_calls_travel_as_rpc_and_host_errors_are_reraised(worker: StdioWorker) -> None:
    worker.configure()
    worker.send(
        {
            "kind": "run",
            "id": 1,
            "code": "data = artifacts.load('blob')\ntry:\n    artifacts.load('gone')\n"
            "except KeyError as exc:\n    caught = type(exc).__name__\n"
            "[data == b'\\x00\\x01', caught]",
        }
    )
    first = worker.recv_kind("rpc")
    assert first["method"] == "artifacts.load"
    assert first["params"] == {"name": "blob"}
    worker.send({"kind": "rpc_result", "id": first["id"], "ok": True, "value": b"\x00\x01"})
    second = worker.recv_kind("rpc")
    worker.send(
        {
            "kind": "rpc_result",
            "id": second["id"],
            "ok": False,
            "error": {"type": "ArtifactNotFoundError", "message": "no artifact 'gone'"},
        }
    )
    outcome = worker.recv_kind("result")["outcome"]
    assert outcome["value"] == [True, "ArtifactNotFoundError"], outcome


def test_an_interrupt_stops_only_the_run_it_names(worker: StdioWorker) -> None:
    worker.configure()
    worker.send({"kind": "run", "id": 7, "code": "import time\nwhile True:\n    time.sleep(0.01)"})
    time.sleep(0.2)
    worker.send({"kind": "interrupt", "id": 6})
    with pytest.raises(TimeoutError):
        worker.recv_kind("result", timeout=0.5)
    worker.send({"kind": "interrupt", "id": 7})
    outcome = worker.recv_kind("result")["outcome"]
    assert outcome["error_type"] == "KeyboardInterrupt"
    assert worker.run(8, "'alive'")["value"] == "alive"


def test_reset_clears_names_and_answers(worker: StdioWorker) -> None:
    worker.configure()
    worker.run(1, "x = 1")
    worker.send({"kind": "reset", "id": 2})
    assert worker.recv_kind("reset_done") == {"kind": "reset_done", "id": 2}
    assert worker.run(3, "x")["error_type"] == "NameError"


def test_output_is_streamed_while_a_run_is_still_going(worker: StdioWorker) -> None:
    worker.configure()
    worker.send({"kind": "run", "id": 1, "code": "import time\nprint('early')\ntime.sleep(1)"})
    chunk = worker.recv_kind("output", timeout=5)
    assert chunk == {"kind": "output", "id": 1, "text": "early\n"}
    assert worker.recv_kind("result")["outcome"]["stdout"] == "early\n"


def test_unknown_message_kinds_from_the_host_are_logged_not_obeyed(worker: StdioWorker) -> None:
    worker.configure()
    worker.send({"kind": "hello", "version": 1})
    log = worker.recv_kind("log")
    assert log["level"] == "warning"
    assert "unexpected 'hello'" in log["message"]
    assert worker.run(1, "1")["value"] == 1


def test_when_the_host_goes_away_the_worker_and_its_children_die(worker: StdioWorker) -> None:
    worker.configure()
    outcome = worker.run(
        1, "import os, subprocess\n[os.getpid(), subprocess.Popen(['sleep', '300']).pid]"
    )
    pids = outcome["value"]
    assert all(pid_alive(p) for p in pids)
    worker._in.close()
    assert wait_gone(pids) == []


def test_the_worker_connects_out_over_tcp(worker_root: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]
        proc = subprocess.Popen(
            [bare_python(), "-I", "-c", BOOT, str(worker_root), "--connect", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            conn, _ = server.accept()
            conn.settimeout(10)
            reader = conn.makefile("rb")
            writer = conn.makefile("wb", buffering=0)
            assert wire.read_message(reader)["kind"] == "hello"  # type: ignore[index]
            wire.write_frame(writer, wire.encode_message({"kind": "configure"}))
            assert wire.read_message(reader)["kind"] == "ready"  # type: ignore[index]
            wire.write_frame(writer, wire.encode_message({"kind": "run", "id": 1, "code": "6*7"}))
            result = wire.read_message(reader)
            assert result is not None
            assert result["outcome"]["value"] == 42
            wire.write_frame(writer, wire.encode_message({"kind": "shutdown"}))
            assert proc.wait(10) == 0
            reader.close()
            writer.close()
            conn.close()
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            assert proc.stderr is not None
            proc.stderr.close()


def test_bad_arguments_print_usage_and_exit(worker_root: Path) -> None:
    done = subprocess.run(
        [bare_python(), "-I", "-c", BOOT, str(worker_root), "--bogus"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "usage:" in done.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the worker as an unprivileged user",
)
def test_the_process_limit_stops_a_fork_storm_of_an_unprivileged_worker(
    worker_root: Path,
) -> None:
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    worker = StdioWorker(worker_root, prefix=prefix)
    try:
        assert worker.recv()["kind"] == "hello"
        assert worker.configure(limits={"max_processes": 8})["warnings"] == []
        outcome = worker.run(
            1,
            "import subprocess\nprocs = []\n"
            "for _ in range(200):\n    procs.append(subprocess.Popen(['sleep', '30']))",
        )
        assert outcome["error_type"] == "BlockingIOError", outcome
        assert worker.run(2, "len(procs) <= 8")["value"] is True
        assert worker.run(3, "for p in procs: p.kill()\n'alive'")["value"] == "alive"
    finally:
        worker.close()
