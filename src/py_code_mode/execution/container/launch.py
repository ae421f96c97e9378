"""Creating, attaching, starting and bootstrapping one container (blocking).

:func:`launch` returns a :class:`Launched` container whose worker is ready: it said
hello on stdout (stdio transport) or listens on its port (TCP transport). Launching
blocks on the engine and on the attach socket, so it runs on a thread: for a
session start, or ahead of time in the warm pool.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from py_code_mode.errors import ConfigError, ExecutorError
from py_code_mode.execution.container.config import ContainerConfig
from py_code_mode.execution.container.engine import (
    api,
    check_image,
    docker_errors,
    forget_image,
    remove_container,
    track,
)
from py_code_mode.execution.container.reaper import LABEL_SESSION, reap_once
from py_code_mode.execution.container.spec import Spec, build_spec
from py_code_mode.execution.container.stream import DockerDemux
from py_code_mode.execution.container.watch import ExitWatch, oom_events
from py_code_mode.worker import wire

__all__ = ["Launched", "launch", "prepare_engine"]

_MAX_HELLO = 1 << 20


def prepare_engine(config: ContainerConfig, engine: str | None = None) -> Spec:
    """Reach the engine, clean up strays once, check the image; the container spec.

    ``engine`` is the URL of a configured remote engine (None: the environment's);
    stray cleanup and OOM events cover the environment's engine only.

    Raises:
        ConfigError: No docker SDK, or the image is missing.
        ExecutorError: No engine is reachable.
    """
    client = api(engine=engine)
    if engine is None:
        oom_events.start()
        reap_once()
    check_image(client, config.image, engine)
    return build_spec(config)


@dataclass
class Launched:
    """A started container whose worker is ready: it said hello (stdio) or listens (TCP).

    ``stdout`` holds demultiplexed protocol bytes read past the hello, ``demux`` the
    state of a Docker frame read halfway; whoever adopts the container continues there.
    """

    container_id: str
    attach: socket.socket
    keepalive: Any
    """The SDK's object around ``attach``, held so that collecting its HTTP response
    never closes the socket."""
    watch: ExitWatch
    host_port: int | None
    demux: DockerDemux = field(default_factory=DockerDemux)
    stdout: bytearray = field(default_factory=bytearray)
    hello: dict[str, Any] | None = None

    @property
    def stderr_tail(self) -> bytes:
        """The end of the container's stderr read so far."""
        return self.demux.stderr_tail

    def discard(self) -> None:
        """Close the attach socket and remove the container (blocking)."""
        with contextlib.suppress(OSError):
            self.attach.close()
        remove_container(self.container_id)

    def wait_ready(self, timeout: float) -> None:
        """Read the attach stream until the worker is ready (blocking).

        Raises:
            ExecutorError: The worker ended or did not get ready in time.
        """
        deadline = time.monotonic() + timeout
        sock = self.attach
        while not self._ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutorError(f"the worker did not start within {timeout:g} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise ExecutorError("the worker exited while starting")
            self.stdout += self.demux.feed(data)
        sock.settimeout(None)

    def _ready(self) -> bool:
        if self.host_port is not None:
            return b"listening on" in self.stderr_tail
        if self.hello is not None:
            return True
        if len(self.stdout) < 4:
            return False
        length = int.from_bytes(self.stdout[:4], "big")
        if length > _MAX_HELLO:
            raise ExecutorError("the worker sent an oversized first message")
        if len(self.stdout) < 4 + length:
            return False
        message = wire.decode_body(bytes(self.stdout[4 : 4 + length]))
        del self.stdout[: 4 + length]
        if message.get("kind") != "hello":
            raise ExecutorError(f"the worker began with {message.get('kind')!r}, not hello")
        self.hello = message
        return True


def _raw_socket(attached: Any) -> socket.socket:
    raw = getattr(attached, "_sock", attached)
    if isinstance(raw, ssl.SSLSocket) or type(raw) is not socket.socket:
        # A TLS (tcp://) or SSH engine (whose stream is an ssh process posing as a
        # socket subclass): relay it through a local socket pair.
        from py_code_mode.execution.container.stream_bridge import bridge

        return bridge(raw)
    return raw


def launch(spec: Spec, timeout: float) -> Launched:
    """Create, attach, start and bootstrap one container; wait until its worker is ready.

    Blocking; ``timeout`` bounds the wait for the worker.

    Raises:
        ConfigError: The image is missing or the settings are refused by the engine.
        ExecutorError: The engine failed.
    """
    client = api(engine=spec.engine)
    errors = docker_errors()
    session = uuid.uuid4().hex
    try:
        created = client.create_container(
            spec.image,
            entrypoint=spec.entrypoint,
            user=spec.user,
            stdin_open=True,
            environment=spec.environment,
            labels={**spec.labels, LABEL_SESSION: session},
            host_config=client.create_host_config(**spec.host_config),
            name=f"py-code-mode-{session[:12]}",
            ports=spec.ports or None,
            hostname="sandbox",
            # Not the tmpfs: Docker would make a working dir it mounts over root-owned 0755.
            working_dir="/",
            use_config_proxy=False,
        )
    except errors.ImageNotFound as exc:
        forget_image(spec.image)
        raise ConfigError(
            f"the image {spec.image!r} is not present on the Docker engine; build it with "
            "`py-code-mode image build` or set ContainerConfig.image"
        ) from exc
    except errors.APIError as exc:
        raise ExecutorError(f"Docker refused to create the container: {exc}") from exc
    container_id = str(created["Id"])
    track(container_id, spec.engine)
    attached: Any = None
    try:
        attached = client.attach_socket(
            container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        raw = _raw_socket(attached)
        watch = ExitWatch(container_id)
        client.start(container_id)
        raw.setblocking(True)
        raw.sendall(len(spec.bootstrap).to_bytes(4, "big") + spec.bootstrap)
        host_port = None
        if spec.tcp_port is not None:
            info = client.inspect_container(container_id)
            bindings = info["NetworkSettings"]["Ports"][f"{spec.tcp_port}/tcp"]
            host_port = int(bindings[0]["HostPort"])
        launched = Launched(container_id, raw, attached, watch, host_port)
        try:
            launched.wait_ready(timeout)
        except (ExecutorError, wire.WireError, OSError) as exc:
            tail = launched.stderr_tail.decode(errors="replace").strip()
            raise ExecutorError(f"{exc}" + (f"\n{tail}" if tail else "")) from None
    except BaseException as exc:
        with contextlib.suppress(Exception):
            if attached is not None:
                attached.close()
        remove_container(container_id)
        if isinstance(exc, errors.APIError):
            raise ExecutorError(
                f"Docker could not start the container from {spec.image!r}: {exc}"
            ) from exc
        if isinstance(exc, OSError | KeyError | IndexError | TypeError):
            raise ExecutorError(f"could not connect to the new container: {exc}") from exc
        raise
    return launched
