"""The sandbox end of the egress proxy: a loopback port piped to the proxy's unix socket.

A sandbox (the subprocess worker's jail, an ``allowlist`` container, a tool's jail
with ``network: true``) has no route out; the host binds its egress proxy's unix
socket in. HTTP clients only know TCP proxies, so :func:`start_forwarder` listens on
``127.0.0.1`` inside the sandbox's own network namespace and one daemon thread pipes
every connection to the socket with a selector (so runs don't see extra threads come
and go). Bypassing it gains nothing: the socket leads to the same proxy, and the
proxy decides.

Two users:

* the worker calls :func:`start_from_env` when the host names the socket in
  ``PY_CODE_MODE_EGRESS_SOCKET``, which also sets ``HTTP(S)_PROXY`` for the worker
  and every process it starts;
* a jailed tool runs this file as a launcher,
  ``python -I -S egress.py --socket PATH -- TOOL ARGS...``: it starts the forwarder,
  runs the tool as its child with the proxy variables set, passes stdin/stdout/stderr
  through untouched (an MCP server speaks JSON-RPC over them), forwards signals, and
  exits with the tool's status (``128 + n`` when signal ``n`` killed it, as bwrap
  reports). Stdlib only, and plain enough syntax for any python3 the host has.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import MutableMapping

__all__ = ["main", "proxy_env", "start_forwarder", "start_from_env"]

SOCKET_ENV = "PY_CODE_MODE_EGRESS_SOCKET"
URL_FILE_ENV = "PY_CODE_MODE_EGRESS_URL_FILE"
_CHUNK = 64 * 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
_USAGE = "usage: egress.py --socket PATH -- COMMAND [ARG...]"


def start_forwarder(path: str) -> str:
    """Listen on this namespace's loopback and pipe each connection to ``path``.

    Returns:
        The proxy URL, ``http://127.0.0.1:<port>``.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    thread = threading.Thread(
        target=_Forwarder(listener, path).run, name="py-code-mode-egress", daemon=True
    )
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def proxy_env(environ: MutableMapping[str, str], url: str) -> None:
    """Point every proxy variable of ``environ`` at ``url`` and drop the exemptions."""
    for name in _PROXY_VARS:
        environ[name] = url
    for name in ("NO_PROXY", "no_proxy"):
        environ.pop(name, None)


def start_from_env() -> str | None:
    """Start the forwarder when the host named a proxy socket; return the proxy URL."""
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None
    url = start_forwarder(path)
    proxy_env(os.environ, url)
    url_file = os.environ.get(URL_FILE_ENV)
    if url_file:  # installers run with ``docker exec`` read it: they don't inherit our env
        with open(url_file, "w", encoding="ascii") as fh:
            fh.write(url)
    return url


def main(argv: list[str]) -> int:
    """Run a tool beside the forwarder; return its exit status (see the module doc)."""
    if len(argv) < 4 or argv[0] != "--socket" or argv[2] != "--":
        print(_USAGE, file=sys.stderr)
        return 2
    env = dict(os.environ)
    proxy_env(env, start_forwarder(argv[1]))
    env.pop(SOCKET_ENV, None)
    children: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []
    for name in _FORWARDED:  # before the spawn; what comes before the child exists waits
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, lambda got, _frame: _relay(children, pending, got))
    try:
        children.append(subprocess.Popen(argv[3:], env=env))
    except OSError as exc:
        print(f"py-code-mode: could not start {argv[3]!r} in the jail: {exc}", file=sys.stderr)
        return 127
    while pending:
        _relay(children, [], pending.pop(0))
    # Our copies of stdin/stdout must not keep the tool's pipes open (EOF is the tool's).
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    code = children[0].wait()
    return 128 - code if code < 0 else code


def _relay(children: list[subprocess.Popen[bytes]], pending: list[int], signum: int) -> None:
    if not children:
        pending.append(signum)
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
