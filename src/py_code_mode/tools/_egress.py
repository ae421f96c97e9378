"""Where a host-side tool may connect: public addresses only, checked after resolution.

Tools run on the host, so a URL chosen by agent code could otherwise reach the
host's own services (``http://127.0.0.1:6379``), the private network, or a cloud
metadata endpoint (``169.254.169.254``). The rule here: a name is resolved, and
the connection is refused unless every address it resolves to is public, or
falls in a range the tool file lists under ``allow_addresses``. The connection
then goes to the checked address itself, so a second, different DNS answer
cannot slip past (DNS rebinding).

Two enforcement points share :class:`AddressPolicy`:

* :func:`checked_transport` wraps the HTTP tools' client transport; every request,
  redirects included, is checked and pinned to the checked address (TLS still
  verifies the name).
* :class:`EgressProxy` is a CONNECT-only proxy on host loopback for CLI tools that
  declare ``network: true``: their environment points ``https_proxy``/``http_proxy``
  at it (curl is told to tunnel plain HTTP as well), and it opens only checked
  connections.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from py_code_mode.errors import ToolError

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "AddressPolicy",
    "EgressProxy",
    "EgressRefusedError",
    "checked_transport",
    "parse_networks",
]

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HEADER_LIMIT: Final = 16 * 1024
_CONNECT_TIMEOUT: Final = 10.0
_PIPE_CHUNK: Final = 64 * 1024
_REFUSALS_KEPT: Final = 8


class EgressRefusedError(ToolError):
    """A connection the policy refused; adapters re-raise it as a plain ``ToolError``."""


def parse_networks(
    items: Iterable[str], *, field: str = "allow_addresses"
) -> tuple[IPNetwork, ...]:
    """Parse ``allow_addresses`` entries: an address (``127.0.0.1``) or a range (``10.0.0.0/8``).

    Raises:
        ValueError: An entry is neither; the message names it.
    """
    networks: list[IPNetwork] = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{field}: {item!r} is not an IP address or range (e.g. '10.0.0.0/8', '127.0.0.1')"
            ) from None
    return tuple(networks)


_EMBEDS_IPV4: Final = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated): ::127.0.0.1
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix
)


def _plain(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 form carries (mapped, 6to4, compatible, NAT64), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
        if any(address in network for network in _EMBEDS_IPV4):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


class AddressPolicy:
    """Public addresses, plus the ranges a tool file allows.

    Args:
        allow: Ranges reachable although not public (a tool's ``allow_addresses``).
        tool: Tool name, for messages.
    """

    def __init__(self, allow: Iterable[IPNetwork] = (), *, tool: str = "") -> None:
        self.allow = tuple(allow)
        self.tool = tool

    def permits(self, address: str) -> bool:
        """True if ``address`` (an IP literal) may be connected to."""
        try:
            ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))
        except ValueError:
            return False
        if any(ip in network for network in self.allow):
            return True
        return ip.is_global and not ip.is_multicast

    async def resolve(self, host: str, port: int) -> str:
        """Resolve ``host`` and return an address to connect to, checked.

        Raises:
            EgressRefusedError: The name does not resolve, or resolves to any
                address that is not allowed (the message says how to allow it).
        """
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise EgressRefusedError(
                f"tool '{self.tool}': cannot resolve {host!r}: {exc}", tool=self.tool
            ) from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not self.permits(a)]
        if refused or not addresses:
            raise EgressRefusedError(
                f"tool '{self.tool}': connection to {host}:{port} refused: it resolves to "
                f"{', '.join(refused) or 'nothing'}, which is not a public address (loopback, "
                "private, link-local and cloud-metadata ranges are closed to tools). A tool "
                "file may open a range with allow_addresses: ['10.0.0.0/8'].",
                tool=self.tool,
            )
        return addresses[0]


def checked_transport(policy: AddressPolicy) -> httpx2.AsyncBaseTransport:
    """An httpx2 transport enforcing ``policy`` on every request, redirects included."""
    import httpx2

    class _Checked(httpx2.AsyncBaseTransport):
        def __init__(self) -> None:
            self._inner = httpx2.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
            host = request.url.host
            port = request.url.port or (443 if request.url.scheme == "https" else 80)
            address = await policy.resolve(host, port)
            if address != host.strip("[]"):
                if request.url.scheme == "https":
                    request.extensions = {**request.extensions, "sni_hostname": host}
                request.url = request.url.copy_with(host=address)
            return await self._inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self._inner.aclose()

    return _Checked()


class EgressProxy:
    """A CONNECT proxy on ``127.0.0.1`` that opens only connections ``policy`` permits.

    Started lazily by the first call of a CLI tool that declares ``network: true``
    and shared by its later calls; :meth:`aclose` stops it.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._server: asyncio.Server | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refusals: collections.deque[str] = collections.deque(maxlen=_REFUSALS_KEPT)
        """The latest refusals, so a failed call can say why its connection was cut."""

    async def url(self) -> str:
        """``http://127.0.0.1:<port>``, starting the proxy if needed."""
        async with self._lock:
            if self._server is None:
                self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def aclose(self) -> None:
        """Stop listening and cut open tunnels. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._tunnel(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _CONNECT_TIMEOUT)
        if len(head) > _HEADER_LIMIT:
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            await _reply(writer, 405, "only CONNECT is served (tunnel plain HTTP too)")
            return
        host, _, port_text = parts[1].rpartition(":")
        if not host or not port_text.isdigit():
            await _reply(writer, 400, "CONNECT target must be host:port")
            return
        try:
            address = await self._policy.resolve(host, int(port_text))
        except EgressRefusedError as exc:
            logger.info("egress refused: %s", exc)
            self.refusals.append(str(exc))
            await _reply(writer, 403, str(exc))
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(address, int(port_text)), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            await _reply(writer, 502, f"cannot connect to {host}:{port_text}: {exc}")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            upstream_writer.close()


async def _reply(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode("utf-8", "replace")
    writer.write(
        f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(_PIPE_CHUNK):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.write_eof()
