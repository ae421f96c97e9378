"""The worker in a launched container as the host talks to it.

:func:`adopt` moves a :class:`Launched` container's attach socket onto the event
loop and connects to its worker: over the attached stdio (Docker's framing removed
by :class:`AttachProtocol`), or over the port published on the host's loopback
interface, presenting the auth token first. :class:`ContainerWorker` is the
resulting protocol connection; removing the container ends the worker.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from py_code_mode.errors import ExecutorError
from py_code_mode.execution._isolated.client import WorkerConnection, describe_exit
from py_code_mode.execution.container.engine import remove_in_background
from py_code_mode.execution.container.launch import Launched
from py_code_mode.execution.container.stream import AttachProtocol
from py_code_mode.execution.container.watch import GONE
from py_code_mode.worker import wire

if TYPE_CHECKING:
    from py_code_mode.execution.protocol import Host

__all__ = ["ContainerWorker", "adopt"]

_RETRY_DELAY = 0.05


class ContainerWorker(WorkerConnection):
    """The worker in one container: removing the container ends it."""

    noun = "worker container"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: Host,
        *,
        launched: Launched,
        attach: asyncio.BaseTransport,
        memory_limit: int | None,
        max_frame: int,
        output_limit: int,
    ) -> None:
        super().__init__(
            reader,
            writer,
            host,
            label=launched.container_id[:12],
            max_frame=max_frame,
            output_limit=output_limit,
        )
        self.launched = launched
        self.container_id = launched.container_id
        self._attach = attach
        self._memory_limit = memory_limit
        self._removing = False

    @property
    def stderr_tail(self) -> str:
        """The end of the container's stderr (the worker's own diagnostics)."""
        return self.launched.stderr_tail.decode(errors="replace").strip()

    def _terminate(self) -> None:
        if not self._removing:
            self._removing = True
            remove_in_background(self.container_id)

    def _release(self) -> None:
        self._attach.close()

    def on_container_exit(self, status: int) -> None:
        """Record the container's exit status (an :class:`ExitWatch` callback)."""
        self._exited(status)

    def check_alive(self) -> bool:
        """Notice an exit the event loop has not processed yet; True if still running."""
        watch = self.launched.watch
        if not self.dead.is_set() and watch.done:
            self._exited(watch.status if watch.status is not None else GONE)
        return not self.dead.is_set()

    def describe_exit(self, returncode: int) -> str:
        """Why the container ended, naming the memory limit when the kernel hit it."""
        if returncode == GONE:
            return "disappeared (its container was removed from outside)"
        if 128 < returncode < 160:  # Docker's (and the init's) way to report a signal
            returncode = 128 - returncode
        if returncode == -9 and self.launched.watch.oom:
            limit = "" if self._memory_limit is None else f" ({self._memory_limit >> 20} MiB)"
            return f"was killed by the kernel: the container reached its memory limit{limit}"
        return describe_exit(returncode)


async def adopt(
    launched: Launched,
    host: Host,
    *,
    token: bytes | None,
    memory_limit: int | None,
    max_frame: int,
    output_limit: int,
) -> tuple[ContainerWorker, dict[str, Any] | None]:
    """Wrap a launched container's streams in a worker connection on this loop.

    Returns the connection and the worker's hello when it was already read.

    Raises:
        ExecutorError: The container exited before it accepted a TCP connection.
        OSError: The attach socket failed.
    """
    loop = asyncio.get_running_loop()
    stdio = launched.host_port is None
    attach_reader = asyncio.StreamReader(loop=loop)
    if stdio and launched.stdout:
        attach_reader.feed_data(bytes(launched.stdout))
        launched.stdout.clear()
    protocol = AttachProtocol(attach_reader, launched.demux, carries_protocol=stdio)
    launched.attach.setblocking(False)
    transport, _ = await loop.create_connection(lambda: protocol, sock=launched.attach)
    hello = launched.hello
    if stdio:
        reader = attach_reader
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    else:
        try:
            reader, writer, hello = await _connect_tcp(launched, token, max_frame)
        except BaseException:
            transport.close()
            raise
    handle = ContainerWorker(
        reader,
        writer,
        host,
        launched=launched,
        attach=transport,
        memory_limit=memory_limit,
        max_frame=max_frame,
        output_limit=output_limit,
    )
    # Weakly: the watch thread lives as long as the container, and a strong reference
    # would keep a session dropped without close() (and its container) from being
    # collected and freed.
    exit_callback = weakref.WeakMethod(handle.on_container_exit)

    def on_exit(status: int) -> None:
        live = exit_callback()
        if live is not None:
            live(status)

    launched.watch.subscribe(loop, on_exit)
    return handle, hello


async def _connect_tcp(
    launched: Launched, token: bytes | None, max_frame: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    """Connect to the published port and authenticate, retrying until it listens."""
    assert launched.host_port is not None
    last = "no answer"
    while True:
        if launched.watch.done:
            raise ExecutorError(f"the container exited before it accepted a connection ({last})")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", launched.host_port)
        except OSError as exc:
            last = str(exc)
            await asyncio.sleep(_RETRY_DELAY)
            continue
        try:
            if token is not None:
                writer.write(len(token).to_bytes(4, "big") + token)
                await writer.drain()
            hello = await wire.read_message_async(reader, max_frame)
        except (OSError, wire.WireError) as exc:
            hello = None
            last = str(exc)
        if hello is not None and hello.get("kind") == "hello":
            return reader, writer, hello
        writer.close()
        last = "the worker closed the connection (not listening yet, or the token was refused)"
        await asyncio.sleep(_RETRY_DELAY)
