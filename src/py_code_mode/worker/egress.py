"""The sandbox end of ``network="allowlist"``: a loopback port piped to the proxy socket.

The sandbox has no route out; the host binds its egress proxy's unix socket in and
names it in ``PY_CODE_MODE_EGRESS_SOCKET``. HTTP clients only know TCP proxies, so
:func:`start_from_env` listens on ``127.0.0.1`` inside the sandbox's own network
namespace and sets ``HTTP_PROXY``/``HTTPS_PROXY`` (and the lower-case forms) for the
worker and every process it starts. One daemon thread pipes every connection with a
selector, so runs don't see extra threads come and go. Bypassing it gains nothing:
the socket leads to the same proxy, and the proxy decides.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading

__all__ = ["start_from_env"]

SOCKET_ENV = "PY_CODE_MODE_EGRESS_SOCKET"
URL_FILE_ENV = "PY_CODE_MODE_EGRESS_URL_FILE"
_CHUNK = 64 * 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


def start_from_env() -> str | None:
    """Start the forwarder when the host named a proxy socket; return the proxy URL."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in _PROXY_VARS:
        os.environ[name] = url
    for name in ("NO_PROXY", "no_proxy"):
        os.environ.pop(name, None)
    url_file = os.environ.get(URL_FILE_ENV)
    if url_file:  # installers run with ``docker exec`` read it: they don't inherit our env
        with open(url_file, "w", encoding="ascii") as fh:
            fh.write(url)
    thread = threading.Thread(
        target=_Forwarder(listener, path).run, name="py-code-mode-egress", daemon=True
    )
    thread.start()
    return url


class _Forwarder:
    def __init__(self, listener: socket.socket, path: str) -> None:
        self._listener = listener
        self._path = path
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)

    def run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._accept()
                else:
                    self._move(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self._path)
        except OSError:
            client.close()
            upstream.close()
            return
        client.setblocking(True)
        upstream.setblocking(True)
        self._selector.register(client, selectors.EVENT_READ, upstream)
        self._selector.register(upstream, selectors.EVENT_READ, client)

    def _move(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(_CHUNK)
            if data:
                sink.sendall(data)
                return
            sink.shutdown(socket.SHUT_WR)
            self._selector.unregister(source)
            if sink.fileno() < 0 or self._selector.get_map().get(sink.fileno()) is None:
                self._close(source, sink)
        except OSError:
            self._close(source, sink)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
