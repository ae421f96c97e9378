"""A container's attach stream over TLS (or SSH), handed to the event loop as a plain socket.

The event loop can only adopt a plain socket, but the attach stream of a remote
engine reached over ``tcp://`` with TLS is an :class:`ssl.SSLSocket` whose TLS
session the docker SDK already set up. One thread per container relays between it
and one end of a local socket pair; the other end goes to the executor exactly like
a Unix-socket attach stream. The relay ends (closing its end) when either side
closes, so a dead engine looks to the executor like a dead worker.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from typing import Any

__all__ = ["bridge"]

_CHUNK = 65536


def bridge(remote: Any) -> socket.socket:
    """A plain socket whose peer relays to and from ``remote`` on a daemon thread.

    ``remote`` is an :class:`ssl.SSLSocket` (pumped without blocking from one thread,
    as OpenSSL requires) or any object with ``recv``/``sendall`` (two threads).
    """
    ours, theirs = socket.socketpair()
    target = _pump_tls if isinstance(remote, ssl.SSLSocket) else _pump_threads
    threading.Thread(
        target=target, args=(remote, theirs), name="py-code-mode-attach-relay", daemon=True
    ).start()
    return ours


def _pump_tls(tls: ssl.SSLSocket, local: socket.socket) -> None:
    to_tls = bytearray()
    to_local = bytearray()
    tls.setblocking(False)
    local.setblocking(False)
    try:
        while True:
            readers = [tls, local] if not to_tls else [tls]
            writers = ([tls] if to_tls else []) + ([local] if to_local else [])
            if tls.pending():
                readable: list[Any] = [tls]
            else:
                readable, _, _ = select.select(readers, writers, [], 5.0)
            if tls in readable:
                try:
                    data = tls.recv(_CHUNK)
                    if not data:
                        return
                    to_local += data
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
            if local in readable:
                data = local.recv(_CHUNK)
                if not data:
                    return
                to_tls += data
            if to_local:
                with contextlib.suppress(BlockingIOError):
                    sent = local.send(to_local)
                    del to_local[:sent]
            if to_tls:
                try:
                    sent = tls.send(to_tls)
                    del to_tls[:sent]
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
    except OSError:
        return
    finally:
        _end(local)
        _end(tls)


def _end(stream: Any) -> None:
    # shutdown() first: a plain close() leaves a recv() blocked on another thread
    # asleep and sends no end-of-stream while that call holds the socket.
    with contextlib.suppress(OSError, AttributeError):
        stream.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        stream.close()


def _pump_threads(remote: Any, local: socket.socket) -> None:
    def upstream() -> None:
        try:
            while data := local.recv(_CHUNK):
                remote.sendall(data)
        except OSError:
            pass
        finally:
            _end(remote)
            _end(local)

    threading.Thread(target=upstream, name="py-code-mode-attach-up", daemon=True).start()
    # The SSH client's stream reads a pipe whose read(n) waits for all n bytes;
    # read1 returns what has arrived.
    pipe = getattr(getattr(remote, "proc", None), "stdout", None)
    receive = getattr(pipe, "read1", None) or remote.recv
    try:
        while data := receive(_CHUNK):
            local.sendall(data)
    except OSError:
        pass
    finally:
        _end(local)
        _end(remote)
