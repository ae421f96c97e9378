"""The threat suite's host: planted canaries, a loopback service, a signal trap, sessions.

Each executor variant gets one session per module (cases are independent, so they
share it; the destructive ones reset it afterwards). The host side plants a secret in
its environment, in the user's home and in the storage base, listens on a loopback
port and traps SIGUSR1, so every case can check that nothing leaked and nothing on
the host was touched.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from py_code_mode import FileStorage, Session
from py_code_mode._private import jail

from ..execution._container_support import TEST_IMAGE, engine_problem

VARIANTS = ("subprocess-bwrap", "container-runc", "container-runsc")


@dataclass
class Host:
    """What the host planted and watches while hostile code runs."""

    token: str
    env_canary: str
    home_canary: str
    storage_canary: str
    home_canary_path: Path
    storage: Path
    port: int
    connections: list[str] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)

    @property
    def canaries(self) -> tuple[str, ...]:
        return (self.env_canary, self.home_canary, self.storage_canary)

    def write_targets(self, venv: Path | None) -> list[Path]:
        """Host paths hostile code tries to create; none may exist afterwards."""
        targets = [
            Path(f"/tmp/pcm-pwn-{self.token}"),
            Path.home() / f"pcm-pwn-{self.token}",
            self.storage / "workflows" / f"pwn_{self.token}.py",
            self.storage / f"pcm-pwn-{self.token}",
            Path(f"/etc/pcm-pwn-{self.token}"),
            Path(f"/usr/lib/pcm-pwn-{self.token}"),
        ]
        if venv is not None:
            targets += list(venv.rglob(f"*{self.token}*"))
        return targets

    def placeholders(self) -> dict[str, str]:
        return {
            "TOKEN": self.token,
            "HOME_DIR": str(Path.home()),
            "HOME_CANARY_PATH": str(self.home_canary_path),
            "STORAGE_DIR": str(self.storage),
            "HOST_PID": str(os.getpid()),
            "PORT": str(self.port),
        }


def _runsc_problem() -> str | None:
    import docker

    client = docker.from_env(timeout=10)
    try:
        runtimes = client.info().get("Runtimes") or {}
    finally:
        client.close()
    if "runsc" not in runtimes:
        return "runsc (gVisor) is not registered with dockerd; .ci/docker.sh does it"
    return None


def variant_problem(variant: str) -> str | None:
    """Why a variant cannot run here, or None."""
    if variant == "subprocess-bwrap":
        found = jail.probe()
        return None if found.usable else found.detail
    problem = engine_problem()
    if problem is None and variant == "container-runsc":
        problem = _runsc_problem()
    return problem


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    token = secrets.token_hex(6)
    storage = tmp_path_factory.mktemp("threat-storage")
    made = Host(
        token=token,
        env_canary=f"ENVCANARY{secrets.token_hex(8)}",
        home_canary=f"HOMECANARY{secrets.token_hex(8)}",
        storage_canary=f"STORECANARY{secrets.token_hex(8)}",
        home_canary_path=Path.home() / f".pcm-threat-canary-{token}",
        storage=storage,
        port=0,
    )
    made.home_canary_path.write_text(made.home_canary)
    (storage / f"canary-{token}.txt").write_text(made.storage_canary)
    old_env = os.environ.get("PCM_THREAT_SECRET")
    os.environ["PCM_THREAT_SECRET"] = made.env_canary

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    made.port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            made.connections.append(str(peer))
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: made.signals.append(signum))
    try:
        yield made
    finally:
        signal.signal(signal.SIGUSR1, previous)
        stop.set()
        server.close()
        thread.join(5)
        made.home_canary_path.unlink(missing_ok=True)
        if old_env is None:
            os.environ.pop("PCM_THREAT_SECRET", None)
        else:
            os.environ["PCM_THREAT_SECRET"] = old_env


def _executor(variant: str, tools: Path | None) -> Any:
    if variant == "subprocess-bwrap":
        from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

        return SubprocessExecutor(
            SubprocessConfig(
                tools_path=tools,
                isolation="bwrap",
                memory_limit="1g",
                max_processes=128,
                tmp_size_mb=64,
            )
        )
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    return ContainerExecutor(
        ContainerConfig(
            image=TEST_IMAGE,
            tools_path=tools,
            memory_limit="512m",
            pids_limit=128,
            workdir_size="64m",
            runtime="runsc" if variant == "container-runsc" else None,
            warm_pool=1,
        )
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=VARIANTS)
async def hostile(request: pytest.FixtureRequest, host: Host) -> AsyncIterator[Session]:
    """A started session of one executor variant, shared by the module's cases."""
    variant = str(request.param)
    problem = variant_problem(variant)
    if problem is not None:
        pytest.skip(f"{variant}: {problem}")
    executor = _executor(variant, None)
    session = Session(storage=FileStorage(host.storage), executor=executor)
    await session.start()
    try:
        yield session
    finally:
        await session.close()
        if variant.startswith("container"):
            from py_code_mode.execution.container import drain_warm_pool

            await drain_warm_pool(executor.config)
