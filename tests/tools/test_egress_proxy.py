"""The egress proxy, driven over real sockets against local HTTP and HTTPS servers.

Names are mapped to 127.0.0.1 with ``hosts`` and loopback opened with
``allow_addresses``, so everything stays offline; each refusal is checked for its
status, for a message naming the host and the fix, and for never reaching a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.execution import SubprocessConfig
from py_code_mode.tools._egress import AddressPolicy, parse_networks
from py_code_mode.tools._egress_proxy import EgressProxy, HostRules, parse_host_patterns
from tests._egress_servers import Served, http_server, https_server, make_tls_files

LOOPBACK = parse_networks(["127.0.0.1/32"])
HOSTS = {"index.test": "127.0.0.1", "other.test": "127.0.0.1", "evil.test": "127.0.0.1"}


def _proxy(allow: list[str], deny: list[str] = (), **kwargs: object) -> EgressProxy:  # type: ignore[assignment]
    policy = AddressPolicy(kwargs.pop("networks", LOOPBACK), hosts=kwargs.pop("hosts", HOSTS))  # type: ignore[arg-type]
    return EgressProxy(policy, HostRules(tuple(allow), tuple(deny)), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def web() -> Iterator[Served]:
    with http_server() as served:
        yield served


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def secure(tls_dir: Path) -> Iterator[Served]:
    with https_server(tls_dir) as served:
        yield served


@pytest.fixture
async def proxy() -> AsyncIterator[EgressProxy]:
    p = _proxy(["index.test", "*.allowed.test"])
    yield p
    await p.aclose()


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


async def _exchange(proxy: EgressProxy, data: bytes) -> bytes:
    """Send ``data`` to the proxy and read until it closes (bounded)."""
    port = int((await proxy.url()).rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        got = b""
        async with asyncio.timeout(20):
            # Until the proxy closes: a reply may come in parts, and a refusal sent
            # before the request was read may end in a reset.
            with contextlib.suppress(ConnectionResetError):
                while chunk := await reader.read(1 << 16):
                    got += chunk
        return got
    finally:
        writer.close()


def _tls_get(proxy_port: int, target: str, sni: str | None, ca: Path) -> bytes:
    """CONNECT to ``target``, then TLS with ``sni`` (None: no SNI) and a GET; blocking."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=20) as raw:
        raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(4096)
            if not chunk:
                return head
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            return head
        context = ssl.create_default_context(cafile=str(ca))
        if sni is None:
            context.check_hostname = False
        with context.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: index.test\r\nConnection: close\r\n\r\n")
            body = b""
            while chunk := tls.recv(4096):
                body += chunk
            return body


async def test_an_allowed_name_is_fetched_over_plain_http(proxy: EgressProxy, web: Served) -> None:
    reply = await _exchange(
        proxy, f"GET http://index.test:{web.port}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert reply.startswith(b"HTTP/1.0 200")
    assert reply.endswith(f"hello from index.test:{web.port}".encode())


@pytest.mark.parametrize("form", ["connect", "plain"])
async def test_a_host_outside_the_allowlist_is_refused_with_the_fix(
    proxy: EgressProxy, web: Served, form: str
) -> None:
    request = (
        f"CONNECT evil.test:{web.port} HTTP/1.1\r\n\r\n"
        if form == "connect"
        else f"GET http://evil.test:{web.port}/ HTTP/1.1\r\n\r\n"
    )
    reply = await _exchange(proxy, request.encode())
    assert reply.startswith(b"HTTP/1.1 403")
    assert b"'evil.test' is not in the allowlist" in reply
    assert b"allow=[...]" in reply
    assert web.hosts == []
    assert proxy.refused == 1
    assert "evil.test" in proxy.refusals[-1]


async def test_deny_wins_over_a_matching_allow_pattern(web: Served) -> None:
    proxy = _proxy(["*.test"], ["evil.test"])
    try:
        refused = await _exchange(proxy, f"CONNECT evil.test:{web.port} HTTP/1.1\r\n\r\n".encode())
        allowed = await _exchange(
            proxy, f"GET http://index.test:{web.port}/ HTTP/1.1\r\n\r\n".encode()
        )
    finally:
        await proxy.aclose()
    assert refused.startswith(b"HTTP/1.1 403")
    assert b"deny pattern 'evil.test'" in refused
    assert allowed.startswith(b"HTTP/1.0 200")


async def test_a_wildcard_allows_subdomains_but_not_the_bare_suffix(web: Served) -> None:
    hosts = {"a.allowed.test": "127.0.0.1", "allowed.test": "127.0.0.1"}
    proxy = _proxy(["*.allowed.test"], hosts=hosts)
    try:
        sub = await _exchange(
            proxy, f"GET http://a.allowed.test:{web.port}/ HTTP/1.1\r\n\r\n".encode()
        )
        bare = await _exchange(
            proxy, f"GET http://allowed.test:{web.port}/ HTTP/1.1\r\n\r\n".encode()
        )
    finally:
        await proxy.aclose()
    assert sub.startswith(b"HTTP/1.0 200")
    assert bare.startswith(b"HTTP/1.1 403")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1"])
async def test_an_allowed_name_pointing_at_a_private_address_is_refused(
    web: Served, address: str
) -> None:
    proxy = _proxy(["index.test"], networks=(), hosts={"index.test": address})
    try:
        reply = await _exchange(
            proxy, f"GET http://index.test:{web.port}/ HTTP/1.1\r\n\r\n".encode()
        )
    finally:
        await proxy.aclose()
    assert reply.startswith(b"HTTP/1.1 403")
    assert b"not a public address" in reply
    assert b"allow_addresses" in reply
    assert web.hosts == []


@pytest.mark.parametrize("target", ["127.0.0.1", "[::1]", "2130706433"])
async def test_ip_literals_are_refused_unless_listed(
    proxy: EgressProxy, web: Served, target: str
) -> None:
    reply = await _exchange(proxy, f"CONNECT {target}:{web.port} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403")
    assert b"not in the allowlist" in reply
    assert web.hosts == []


async def test_a_tls_tunnel_whose_sni_matches_is_served(
    proxy: EgressProxy, secure: Served, tls_dir: Path
) -> None:
    port = int((await proxy.url()).rsplit(":", 1)[1])
    body = await asyncio.to_thread(
        _tls_get, port, f"index.test:{secure.port}", "index.test", tls_dir / "ca.pem"
    )
    assert body.startswith(b"HTTP/1.0 200")
    assert secure.hosts == ["index.test"]


@pytest.mark.parametrize(("sni", "reason"), [("other.test", "differs"), (None, "SNI")])
async def test_a_tunnel_with_another_or_no_sni_is_cut(
    proxy: EgressProxy, secure: Served, tls_dir: Path, sni: str | None, reason: str
) -> None:
    port = int((await proxy.url()).rsplit(":", 1)[1])
    with pytest.raises((ssl.SSLError, OSError)):
        await asyncio.to_thread(
            _tls_get, port, f"index.test:{secure.port}", sni, tls_dir / "ca.pem"
        )
    assert secure.hosts == []
    assert reason in proxy.refusals[-1]


async def test_plain_bytes_in_a_tunnel_are_cut(proxy: EgressProxy, web: Served) -> None:
    reply = await _exchange(
        proxy,
        f"CONNECT index.test:{web.port} HTTP/1.1\r\n\r\n".encode() + _get("/"),
    )
    assert reply == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert web.hosts == []
    assert "TLS" in proxy.refusals[-1]


async def test_control_characters_in_a_name_cannot_forge_log_lines(proxy: EgressProxy) -> None:
    reply = await _exchange(proxy, b"CONNECT evil\nFORGED\x1b[2J.test:443 HTTP/1.1\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 403")
    assert "\n" not in proxy.refusals[-1]
    assert "\x1b" not in proxy.refusals[-1]
    assert "FORGED" in proxy.refusals[-1]


@pytest.mark.parametrize(
    "request_line",
    [
        "CONNECT index.test@evil.test:{port}",
        "CONNECT index.test:{port}@evil.test:{port}",
        "CONNECT index%2etest:{port}",
        "CONNECT index.test\x00.evil:{port}",
        "GET http://index.test@evil.test:{port}/",
        "GET http://index.test:{port}@evil.test:{port}/",
        "GET http://index.test\x00.evil:{port}/",
        "GET http://[::1]:{port}/",
    ],
)
async def test_userinfo_percent_encoding_nul_or_brackets_cannot_pass_an_allowed_name(
    proxy: EgressProxy, web: Served, request_line: str
) -> None:
    line = request_line.format(port=web.port)
    reply = await _exchange(proxy, f"{line} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 403")
    assert web.hosts == []
    assert proxy.refused == 1


@pytest.mark.parametrize("url", ["http://[index.test]:{port}/", "http://[::1:{port}/"])
async def test_an_absolute_url_with_a_bad_bracketed_host_is_refused_with_a_400(
    proxy: EgressProxy, web: Served, url: str
) -> None:
    reply = await _exchange(proxy, f"GET {url.format(port=web.port)} HTTP/1.1\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"not an absolute http:// URL" in reply
    assert web.hosts == []


async def test_a_host_header_naming_another_host_is_replaced_by_the_checked_one(
    proxy: EgressProxy, web: Served
) -> None:
    reply = await _exchange(
        proxy,
        f"GET http://index.test:{web.port}/ HTTP/1.1\r\nHost: evil.test\r\n"
        "host : evil.test\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.0 200")
    assert web.hosts == [f"index.test:{web.port}"]


@pytest.mark.parametrize("smuggled", ["X-A: 1\nHost: evil.test", "X-A: 1\rHost: evil.test"])
async def test_a_header_smuggled_behind_a_bare_cr_or_lf_never_reaches_the_server(
    proxy: EgressProxy, web: Served, smuggled: str
) -> None:
    reply = await _exchange(
        proxy, f"GET http://index.test:{web.port}/ HTTP/1.1\r\n{smuggled}\r\n\r\n".encode()
    )
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"bare CR or LF" in reply
    assert web.hosts == []


async def test_an_oversized_head_is_refused(proxy: EgressProxy) -> None:
    reply = await _exchange(proxy, b"GET http://index.test/ HTTP/1.1\r\nX: " + b"a" * 40_000)
    assert reply.startswith(b"HTTP/1.1 431")


async def test_a_head_that_never_ends_times_out() -> None:
    proxy = _proxy(["index.test"], header_timeout=0.5)
    try:
        reply = await _exchange(proxy, b"GET http://index.test/ HTTP/1.1\r\nX: y")
    finally:
        await proxy.aclose()
    assert reply.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize(
    "line", [b"GET http://index.test/\xff HTTP/1.1", b"\xc3\xa9\xc3\xa9", b"GARBAGE"]
)
async def test_a_malformed_or_non_ascii_request_line_is_refused(
    proxy: EgressProxy, line: bytes
) -> None:
    reply = await _exchange(proxy, line + b"\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")


async def test_an_origin_form_or_https_request_is_refused(proxy: EgressProxy) -> None:
    for target in ("/", "https://index.test/"):
        reply = await _exchange(proxy, f"GET {target} HTTP/1.1\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 400")
        assert b"absolute http:// URL" in reply


async def test_connections_beyond_the_limit_are_answered_503_and_later_ones_served(
    web: Served,
) -> None:
    proxy = _proxy(["index.test"], max_connections=4)
    port = int((await proxy.url()).rsplit(":", 1)[1])
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    try:
        await asyncio.sleep(0)  # let the proxy take them
        for _ in range(50):
            if proxy._slots == 0:
                break
            await asyncio.sleep(0.02)
        extra = await _exchange(proxy, b"GET http://index.test/ HTTP/1.1\r\n\r\n")
        assert extra.startswith(b"HTTP/1.1 503")
    finally:
        for _, writer in idle:
            writer.close()
    for _ in range(100):
        if proxy._slots == 4:
            break
        await asyncio.sleep(0.02)
    again = await _exchange(proxy, f"GET http://index.test:{web.port}/ HTTP/1.1\r\n\r\n".encode())
    await proxy.aclose()
    assert again.startswith(b"HTTP/1.0 200")


def test_host_patterns_accept_names_wildcards_and_ips() -> None:
    assert parse_host_patterns(["PyPI.org.", "*.Example.com", "10.0.0.1", "::1", "*"]) == (
        "pypi.org",
        "*.example.com",
        "10.0.0.1",
        "::1",
        "*",
    )


@pytest.mark.parametrize("bad", ["", "a*.b", "*.", "http://x", "a b", "x/y", "u@h"])
def test_malformed_host_patterns_are_refused_with_the_forms(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a host pattern"):
        parse_host_patterns([bad])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"network": "allowlist"}, "needs the hosts to allow"),
        ({"network": "none", "allow": ["pypi.org"]}, "only apply to network='allowlist'"),
        ({"network": "allowlist", "allow": ["a b"]}, "is not a host pattern"),
        ({"network": "allowlist", "allow": ["x"], "hosts": {"x": "nope"}}, "hosts"),
        ({"network": "allowlist", "allow": ["x"], "isolation": "none"}, "needs the jail"),
        ({"network": "allowlist", "allow": ["x"], "warm_pool": 1}, "warm_pool=0"),
    ],
)
def test_bad_egress_settings_are_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SubprocessConfig(**settings)  # type: ignore[arg-type]


async def test_a_pipelined_second_request_for_another_host_never_reaches_the_server(
    proxy: EgressProxy,
) -> None:
    """Attack: one allowed request, then a second for a denied Host on the same address."""
    with http_server(keep_alive=True) as web:
        reply = await _exchange(
            proxy,
            f"GET http://index.test:{web.port}/a HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET /b HTTP/1.1\r\nHost: evil.test:{web.port}\r\n\r\n".encode(),
        )
    assert reply.startswith(b"HTTP/1.1 200")
    assert web.hosts == [f"index.test:{web.port}"]


async def test_a_plain_http_body_is_forwarded_by_its_length_and_nothing_after_it(
    proxy: EgressProxy,
) -> None:
    with http_server(keep_alive=True) as web:
        reply = await _exchange(
            proxy,
            f"POST http://index.test:{web.port}/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
            f"hello POST /again HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 0\r\n\r\n".encode(),
        )
    assert reply.endswith(b"got 5 bytes")
    assert web.hosts == [f"index.test:{web.port}"]


@pytest.mark.parametrize(
    "headers",
    [
        "Transfer-Encoding: chunked",
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: -1",
        "Content-Length: 5\r\nTransfer-Encoding: chunked",
    ],
)
async def test_a_plain_http_body_without_one_clear_length_is_refused(
    proxy: EgressProxy, web: Served, headers: str
) -> None:
    """Attack: request smuggling through chunked or conflicting body lengths."""
    reply = await _exchange(
        proxy,
        f"POST http://index.test:{web.port}/ HTTP/1.1\r\n{headers}\r\n\r\n0\r\n\r\n".encode(),
    )
    assert reply.startswith(b"HTTP/1.1 411")
    assert b"Content-Length" in reply
    assert web.hosts == []
