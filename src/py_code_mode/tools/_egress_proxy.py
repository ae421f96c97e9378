"""The egress proxy: the one door to the network for CLI tools and allowlisted sandboxes.

It speaks the two proxy forms every HTTP client knows: ``CONNECT host:port`` (a
tunnel, for HTTPS) and absolute-form plain HTTP (``GET http://host/path``). Each
connection passes, in order:

1. The name rules (:class:`HostRules`), when the proxy has any: the requested host
   must match ``allow`` and no ``deny`` pattern. IP literals match only when listed.
2. The address policy (:class:`~py_code_mode.tools._egress.AddressPolicy`): the name
   is resolved and refused if any address is loopback, private, link-local or a
   metadata address (unless allowed by range); the connection goes to the checked
   address, so a second DNS answer can't redirect it.
3. For tunnels under name rules, the TLS ClientHello: its SNI must be present and
   equal the CONNECT host (or, for an IP literal, itself pass the rules), so a
   tunnel to an allowed front can't carry a request for another name.

Refusals before the tunnel opens are answered ``403`` with a body naming the host,
the rule and how to allow it; later ones close the tunnel. Every refusal is logged
and kept in :attr:`EgressProxy.refusals` so the caller can show it to the agent.
Heads are capped in size and time, and connections in number.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit

from py_code_mode._private.scratch import make_scratch
from py_code_mode.tools._egress import AddressPolicy, EgressRefusedError
from py_code_mode.tools._tls_hello import read_client_hello

__all__ = ["EgressProxy", "HostRules", "parse_host_patterns"]

logger = logging.getLogger(__name__)

HEADER_LIMIT: Final = 16 * 1024
HEADER_TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 64
_CONNECT_TIMEOUT: Final = 10.0
_PIPE_CHUNK: Final = 64 * 1024
_REFUSALS_KEPT: Final = 32
_HOP_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization", b"host"}
)


def _normal(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


def parse_host_patterns(items: Iterable[str], *, field: str = "allow") -> tuple[str, ...]:
    """Check host patterns: ``pypi.org``, ``*.example.com`` (subdomains only), an IP, ``*``.

    Raises:
        ValueError: A pattern is malformed; the message names it and the forms.
    """
    patterns: list[str] = []
    for item in items:
        text = item.strip().lower() if isinstance(item, str) else ""
        wildcard = text.startswith("*.")
        body = _normal(text[2:] if wildcard else text)
        pattern = f"*.{body}" if wildcard else body
        if pattern != "*" and (
            not body
            or "*" in body
            or (any(c.isspace() or c in "/:@" for c in body) and not _is_ip(body))
        ):
            raise ValueError(
                f"{field}: {item!r} is not a host pattern; use a name ('pypi.org'), "
                "'*.example.com' for its subdomains, an IP address, or '*' for any host"
            )
        patterns.append(pattern)
    return tuple(patterns)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _matches(host: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@dataclass(frozen=True)
class HostRules:
    """Which host names a sandbox may reach: ``deny`` wins over ``allow``."""

    allow: tuple[str, ...]
    deny: tuple[str, ...] = ()

    def refusal(self, host: str) -> str | None:
        """Why ``host`` is refused, or None when the rules let it through."""
        name = _normal(host)
        for pattern in self.deny:
            if _matches(name, pattern):
                return (
                    f"host {name!r} matches deny pattern {pattern!r}; remove it from the "
                    "executor's deny=[...] to allow it"
                )
        if any(_matches(name, pattern) for pattern in self.allow):
            return None
        return (
            f"host {name!r} is not in the allowlist ({', '.join(self.allow)}); add it to "
            "the executor's allow=[...] (CLI/MCP: --allow-host HOST) to allow it"
        )


_SOCKET_NAME: Final = "egress.sock"


def _remove_socket_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        (directory / _SOCKET_NAME).unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


class EgressProxy:
    """A proxy that opens only connections the rules and the address policy permit.

    Args:
        policy: Where connections may go, by address.
        rules: Which names may be requested; None lets any name through (CLI tools:
            addresses are still checked) and skips the SNI check.
        header_timeout: Seconds a client has to send its request head or ClientHello.
        max_connections: Connections served at once; more are answered ``503``.
        on_refusal: Called with each refusal's message (from the proxy's loop).
    """

    def __init__(
        self,
        policy: AddressPolicy,
        rules: HostRules | None = None,
        *,
        header_timeout: float = HEADER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        on_refusal: Callable[[str], None] | None = None,
    ) -> None:
        self._policy = policy
        self._rules = rules
        self._header_timeout = header_timeout
        self._slots = max_connections
        self._on_refusal = on_refusal
        self._server: asyncio.Server | None = None
        self._unix: list[asyncio.Server] = []
        self._socket_dir: Path | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusals: collections.deque[str] = collections.deque(maxlen=_REFUSALS_KEPT)
        """The latest refusals, so a failed call can say why its connection was cut."""
        self.refused = 0
        """How many connections were refused so far."""

    async def url(self) -> str:
        """``http://127.0.0.1:<port>``, starting the loopback listener if needed."""
        async with self._lock:
            if self._server is None:
                self._server = await asyncio.start_server(
                    self._serve, "127.0.0.1", 0, limit=HEADER_LIMIT
                )
            port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def listen_unix(self, path: str) -> None:
        """Also serve on a unix socket at ``path`` (what a sandbox gets bound in)."""
        self._unix.append(await asyncio.start_unix_server(self._serve, path, limit=HEADER_LIMIT))

    async def unix_socket(self) -> str:
        """The path of this proxy's own unix socket, listening from the first call.

        It lives in a private (0700) scratch directory, removed by :meth:`aclose`, so
        only this user (and the jails the socket is bound into) can connect.
        """
        async with self._lock:
            if self._socket_dir is None:
                directory = await asyncio.to_thread(make_scratch, "egress")
                try:
                    await self.listen_unix(str(directory / _SOCKET_NAME))
                except BaseException:
                    await asyncio.to_thread(_remove_socket_dir, directory)
                    raise
                self._socket_dir = directory
            return str(self._socket_dir / _SOCKET_NAME)

    async def aclose(self) -> None:
        """Stop listening and cut open tunnels. Idempotent."""
        servers = [s for s in (self._server, *self._unix) if s is not None]
        self._server, self._unix = None, []
        for server in servers:
            server.close()
        directory, self._socket_dir = self._socket_dir, None
        if directory is not None:
            await asyncio.to_thread(_remove_socket_dir, directory)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if self._slots <= 0:
                await _reply(writer, 503, "too many connections through the egress proxy")
                return
            self._slots -= 1
            try:
                await self._handle(reader, writer)
            finally:
                self._slots += 1
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        except asyncio.CancelledError:
            # aclose() cuts the connection. Ending normally keeps asyncio's stream
            # callback (which asks the task for its exception) from logging a traceback.
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    def _refuse(self, message: str) -> str:
        # Names come from the client: escape control characters so a refusal can't
        # forge log lines or stderr lines.
        safe = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        text = f"egress refused: {safe}"
        logger.warning("%s", text)
        self.refused += 1
        self.refusals.append(text)
        if self._on_refusal is not None:
            self._on_refusal(text)
        return text

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._header_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _reply(writer, 431, self._refuse(f"request head over {HEADER_LIMIT} bytes"))
            return
        except TimeoutError:
            await _reply(
                writer, 408, self._refuse(f"no request head within {self._header_timeout}s")
            )
            return
        if len(head) > HEADER_LIMIT:
            await _reply(writer, 431, self._refuse(f"request head over {HEADER_LIMIT} bytes"))
            return
        try:
            request_line = head.split(b"\r\n", 1)[0].decode("ascii")
        except UnicodeDecodeError:
            await _reply(writer, 400, self._refuse("the request line is not ASCII"))
            return
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _reply(writer, 400, self._refuse(f"malformed request line {request_line!r}"))
            return
        if parts[0] == "CONNECT":
            await self._tunnel(parts[1], reader, writer)
        else:
            await self._forward(parts, head, reader, writer)

    async def _check(self, host: str, port: int, writer: asyncio.StreamWriter) -> str | None:
        """The checked address for ``host``, or None after answering ``403``."""
        reason = None if self._rules is None else self._rules.refusal(host)
        if reason is None:
            try:
                return await self._policy.resolve(host, port)
            except EgressRefusedError as exc:
                reason = str(exc)
        await _reply(writer, 403, self._refuse(f"{host}:{port}: {reason}"))
        return None

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port_text = target.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            await _reply(writer, 400, self._refuse(f"CONNECT target {target!r} is not host:port"))
            return
        port = int(port_text)
        address = await self._check(host, port, writer)
        if address is None:
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        first = b""
        if self._rules is not None:
            first, reason = await self._client_hello(reader, host)
            if reason is not None:
                self._refuse(f"{host}:{port}: {reason}")  # the client expects TLS now
                return
        await self._splice(address, port=port, host=host, first=first, reader=reader, writer=writer)

    async def _client_hello(
        self, reader: asyncio.StreamReader, host: str
    ) -> tuple[bytes, str | None]:
        """Read the ClientHello; return its bytes and why it is refused (or None)."""
        try:
            async with asyncio.timeout(self._header_timeout):
                data, sni = await read_client_hello(reader)
        except TimeoutError:
            return b"", f"no TLS ClientHello within {self._header_timeout}s"
        except ValueError as exc:
            return b"", f"{exc} (only TLS is tunnelled; send plain HTTP as http:// URLs)"
        if sni is None:
            return data, "the TLS ClientHello names no server (SNI); it is required"
        name = _normal(host)
        if not _is_ip(name):
            if sni != name:
                return data, f"TLS SNI {sni!r} differs from the CONNECT host {name!r}"
            return data, None
        assert self._rules is not None
        return data, self._rules.refusal(sni)

    async def _forward(
        self,
        parts: list[str],
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Send one absolute-form plain-HTTP request on, in origin form."""
        try:  # a bad bracketed host ('http://[name]/') or port raises here
            url = urlsplit(parts[1])
            port = url.port or 80
        except ValueError:
            url, port = urlsplit(""), 0
        if url.scheme != "http" or not url.hostname or not port:
            await _reply(
                writer,
                400,
                self._refuse(
                    f"{parts[1][:200]!r} is not an absolute http:// URL (use CONNECT for https)"
                ),
            )
            return
        if any(b"\r" in line or b"\n" in line for line in head[:-4].split(b"\r\n")):
            # Servers that end lines at a bare LF would see headers we never checked
            # (a second Host: for another site behind the same checked address).
            await _reply(
                writer,
                400,
                self._refuse(f"{parts[1][:200]!r}: a bare CR or LF in the request head"),
            )
            return
        body_size = _body_size(head)
        if body_size is None:
            await _reply(
                writer,
                411,
                self._refuse(
                    f"{parts[1][:200]!r}: a plain-HTTP request body needs one Content-Length "
                    "(chunked or ambiguous bodies are not forwarded); use https:// for uploads"
                ),
            )
            return
        address = await self._check(url.hostname, port, writer)
        if address is None:
            return
        authority = url.hostname if port == 80 else f"{url.hostname}:{port}"
        if ":" in url.hostname:
            authority = f"[{url.hostname}]" + ("" if port == 80 else f":{port}")
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        lines = [f"{parts[0]} {target} {parts[2]}".encode("ascii"), b"Host: " + authority.encode()]
        for line in head.split(b"\r\n")[1:]:
            name = line.split(b":", 1)[0].strip().lower()
            if line and name not in _HOP_HEADERS:
                lines.append(line)
        lines.append(b"Connection: close")
        first = b"\r\n".join(lines) + b"\r\n\r\n"
        await self._splice(
            address,
            port=port,
            host=url.hostname,
            first=first,
            reader=_Bounded(reader, body_size),
            writer=writer,
        )

    async def _splice(
        self,
        address: str,
        *,
        port: int,
        host: str,
        first: bytes,
        reader: _Source,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT):
                upstream_reader, upstream_writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError) as exc:
            await _reply(writer, 502, f"egress proxy: cannot connect to {host}:{port}: {exc}")
            return
        try:
            if first:
                upstream_writer.write(first)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()


class _Source(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Bounded:
    """The first ``size`` bytes of a stream, then end of file.

    A plain-HTTP connection carries exactly one request: its body is forwarded, and
    whatever the client sends after it (a second, pipelined request for another
    ``Host`` on the same checked address) is never read.
    """

    def __init__(self, reader: asyncio.StreamReader, size: int) -> None:
        self._reader = reader
        self._left = size

    async def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        chunk = await self._reader.read(min(n, self._left) if n > 0 else self._left)
        self._left -= len(chunk)
        return chunk


def _body_size(head: bytes) -> int | None:
    """The request body's length from its head: 0 without one, None when not one number."""
    sizes: set[bytes] = set()
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            sizes.add(value.strip())
    if not sizes:
        return 0
    if len(sizes) > 1:
        return None
    (size,) = sizes
    return int(size) if size.isdigit() and len(size) <= 12 else None


async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = (text + "\n").encode("utf-8", "replace")
    # The reason phrase carries the message too: many clients show only the status line.
    reason = "".join(c if " " <= c <= "~" else "?" for c in text.splitlines()[0])[:300]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(source: _Source, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(_PIPE_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.write_eof()
