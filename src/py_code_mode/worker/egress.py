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
  reports) the moment the tool exits. It runs before every networked tool call, so
  the tool is started right after the listener, with only built-in modules loaded;
  the forwarder's imports happen while the tool runs. Stdlib only, and plain enough
  syntax for any python3 the host has.
"""

from __future__ import annotations

import _socket
import _thread
import os
import sys

# The launcher runs before every networked tool call: only cheap built-in modules at
# the top, the rest imported once the tool is already running (see main()).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import MutableMapping

__all__ = ["main", "proxy_env", "start_forwarder", "start_from_env"]

SOCKET_ENV = "PY_CODE_MODE_EGRESS_SOCKET"
URL_FILE_ENV = "PY_CODE_MODE_EGRESS_URL_FILE"
_CHUNK = 64 * 1024
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")
_FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
_USAGE = "usage: egress.py --socket PATH -- COMMAND [ARG...]"


def _listen() -> tuple[_socket.socket, str]:
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def start_forwarder(path: str) -> str:
    """Listen on this namespace's loopback and pipe each connection to ``path``.

    The pipes run on one daemon thread.

    Returns:
        The proxy URL, ``http://127.0.0.1:<port>``.
    """
    import threading

    listener, url = _listen()
    forwarder = _Forwarder(listener, path)
    threading.Thread(target=forwarder.run, name="py-code-mode-egress", daemon=True).start()
    return url


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
    """Run a tool beside the forwarder; return its exit status (see the module doc).

    On success the process ends from the reaper thread, with the tool's status, as
    soon as the tool exits; the main thread meanwhile runs the forwarder.
    """
    if len(argv) < 4 or argv[0] != "--socket" or argv[2] != "--":
        print(_USAGE, file=sys.stderr)
        return 2
    sys.setswitchinterval(0.0002)  # the reaper ends us at once, even mid-import
    listener, url = _listen()
    env = dict(os.environ)
    proxy_env(env, url)
    env.pop(SOCKET_ENV, None)
    # The dispositions Python ignores go back to default, as subprocess does.
    reset = [13, 25]  # SIGPIPE, SIGXFSZ: the same number on every Linux architecture
    try:
        pid = os.posix_spawnp(argv[3], argv[3:], env, setsigdef=reset)
    except OSError as exc:
        print(f"py-code-mode: could not start {argv[3]!r} in the jail: {exc}", file=sys.stderr)
        return 127
    _thread.start_new_thread(_reap, (pid,))
    # From here a signal reaches the tool; one that came earlier ended us, and with us
    # the jail and the tool, as it would have ended the tool.
    import signal

    for name in _FORWARDED:
        signal.signal(getattr(signal, name), lambda got, _frame: _relay(pid, got))
    # Our copies of stdin/stdout must not keep the tool's pipes open (EOF is the tool's).
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        _Forwarder(listener, argv[1]).run()
    except Exception as exc:  # noqa: BLE001 - the tool keeps running, without a proxy
        print(f"py-code-mode: the egress forwarder stopped: {exc!r}", file=sys.stderr)
    forever = _thread.allocate_lock()
    forever.acquire()
    forever.acquire()  # until the reaper ends the process
    return 0


def _reap(pid: int) -> None:
    """Wait for the tool and end the launcher with its status (``128 + n``: signal n)."""
    _, status = os.waitpid(pid, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    os._exit(code)


def _relay(pid: int, signum: int) -> None:
    try:  # noqa: SIM105 - contextlib is not imported on the launcher's fast path
        os.kill(pid, signum)
    except ProcessLookupError:  # it is being reaped: the reaper ends us
        pass


class _Forwarder:
    def __init__(self, raw: _socket.socket, path: str) -> None:
        import selectors
        import socket

        listener = socket.socket(fileno=raw.detach())
        listener.setblocking(False)
        self._socket = socket
        self._listener = listener
        self._path = path
        self._read = selectors.EVENT_READ
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, self._read, None)

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
        upstream = self._socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            upstream.connect(self._path)
        except OSError:
            client.close()
            upstream.close()
            return
        client.setblocking(True)
        upstream.setblocking(True)
        self._selector.register(client, self._read, upstream)
        self._selector.register(upstream, self._read, client)

    def _move(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(_CHUNK)
            if data:
                sink.sendall(data)
                return
            sink.shutdown(_socket.SHUT_WR)
            self._selector.unregister(source)
            if sink.fileno() < 0 or self._selector.get_map().get(sink.fileno()) is None:
                self._close(source, sink)
        except OSError:
            self._close(source, sink)

    def _close(self, *socks: socket.socket) -> None:
        for sock in socks:
            try:  # noqa: SIM105 - contextlib is not imported on the launcher's fast path
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
