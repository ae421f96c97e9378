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
* :class:`~py_code_mode.tools._egress_proxy.EgressProxy` is the proxy that CLI tools
  with ``network: true`` and sandboxes with ``network="allowlist"`` reach the network
  through; it opens only checked connections.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

from py_code_mode.errors import ToolError

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "AddressPolicy",
    "EgressRefusedError",
    "checked_transport",
    "parse_networks",
]

logger = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        hosts: Names answered without DNS (``{"index.test": "127.0.0.1"}``, like curl's
            ``--resolve``), for private mirrors and offline tests. A mapped address is
            checked like a resolved one: a private one still needs ``allow``.
    """

    def __init__(
        self,
        allow: Iterable[IPNetwork] = (),
        *,
        tool: str = "",
        hosts: Mapping[str, str] | None = None,
    ) -> None:
        self.allow = tuple(allow)
        self.tool = tool
        self.hosts = {name.lower().rstrip("."): address for name, address in (hosts or {}).items()}

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
        mapped = self.hosts.get(host.lower().rstrip("."))
        if mapped is not None:
            addresses = [mapped]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise EgressRefusedError(
                    f"{self.who}: cannot resolve {host!r}: {exc}", tool=self.tool
                ) from None
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refused = [a for a in addresses if not self.permits(a)]
        if refused or not addresses:
            raise EgressRefusedError(
                f"{self.who}: connection to {host}:{port} refused: it resolves to "
                f"{', '.join(refused) or 'nothing'}, which is not a public address (loopback, "
                "private, link-local and cloud-metadata ranges are closed). "
                f"{self.how_to_open}",
                tool=self.tool,
            )
        return addresses[0]

    @property
    def who(self) -> str:
        """Who asked, for messages: the tool, or the sandbox when there is none."""
        return f"tool '{self.tool}'" if self.tool else "sandbox egress"

    @property
    def how_to_open(self) -> str:
        """How a range is opened, for messages."""
        if self.tool:
            return "A tool file may open a range with allow_addresses: ['10.0.0.0/8']."
        return "The executor's allow_addresses=['10.0.0.0/8'] opens a range."


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
