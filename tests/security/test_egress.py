"""Hostile code in a ``network="allowlist"`` sandbox tries to get past the egress proxy.

Each sandbox (bwrap jail, runc container, gVisor container) may reach only
``index.test``, mapped to a local HTTP server on host loopback (127.0.0.1 opened with
``allow_addresses``). Agent code tries other names, allowed names pointing at
loopback, private and metadata addresses, IP literals, domain fronting through a
tunnel, no SNI, bypassing the forwarder, malformed and oversized heads and a flood
of connections. Every attempt must fail with a clear error (and a stderr line), and
the servers must never see a request for anything but ``index.test``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from py_code_mode import FileStorage, Session
from tests._egress_servers import Served, http_server, https_server, make_tls_files

from .conftest import VARIANTS, variant_problem

HOSTS = {
    "index.test": "127.0.0.1",
    "evil.test": "127.0.0.1",
    "loop.test": "127.0.0.2",
    "private.test": "10.1.2.3",
    "meta.test": "169.254.169.254",
    "six.test": "::1",
}
ALLOW = ["index.test", "loop.test", "private.test", "meta.test", "six.test"]


@pytest.fixture(scope="module")
def web() -> Iterator[Served]:
    with http_server() as served:
        yield served


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with https_server(make_tls_files(tmp_path_factory.mktemp("tls"))) as served:
        yield served


def _executor(variant: str) -> Any:
    egress: dict[str, Any] = {
        "network": "allowlist",
        "allow": ALLOW,
        "hosts": HOSTS,
        "allow_addresses": ["127.0.0.1/32"],
    }
    if variant == "subprocess-bwrap":
        from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

        return SubprocessExecutor(SubprocessConfig(isolation="bwrap", **egress))
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    from ..execution._container_support import TEST_IMAGE

    return ContainerExecutor(
        ContainerConfig(
            image=TEST_IMAGE,
            runtime="runsc" if variant == "container-runsc" else None,
            **egress,
        )
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=VARIANTS)
async def jailed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Session]:
    variant = str(request.param)
    problem = variant_problem(variant)
    if problem is not None:
        pytest.skip(f"{variant}: {problem}")
    storage = FileStorage(Path(tmp_path_factory.mktemp("egress-storage")))
    session = Session(storage=storage, executor=_executor(variant))
    await session.start()
    try:
        yield session
    finally:
        await session.close()


async def _attempt(session: Session, code: str) -> tuple[dict[str, Any], str]:
    """Run ``code`` (which sets ``out``) and return ``out`` and the run's stderr."""
    result = await session.run(textwrap.dedent(code) + "\nimport json as _j\n_j.dumps(out)")
    assert result.error is None, result.error
    return json.loads(str(result.value)), result.stderr


FETCH = """
import urllib.request, urllib.error
out = {}
try:
    out["body"] = urllib.request.urlopen(URL, timeout=20).read().decode()
except urllib.error.HTTPError as exc:
    out["status"] = exc.code
    out["reason"] = exc.read().decode()
except OSError as exc:
    out["error"] = repr(exc)
"""

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def test_an_allowed_name_is_reached_through_the_proxy(jailed: Session, web: Served) -> None:
    out, stderr = await _attempt(jailed, f"URL = 'http://index.test:{web.port}/'\n{FETCH}")
    assert out == {"body": f"hello from index.test:{web.port}"}
    assert stderr == ""


@pytest.mark.parametrize("form", ["plain", "connect"])
async def test_a_name_outside_the_allowlist_is_refused_clearly(
    jailed: Session, web: Served, form: str
) -> None:
    before = list(web.hosts)
    if form == "plain":
        code = f"URL = 'http://evil.test:{web.port}/'\n{FETCH}"
    else:
        code = f"""
        import http.client, os
        out = {{}}
        port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        conn.set_tunnel("evil.test", {web.port})
        try:
            conn.request("GET", "/")
        except OSError as exc:
            out["error"] = str(exc)
        """
    out, stderr = await _attempt(jailed, code)
    if form == "plain":
        assert out["status"] == 403
        assert "'evil.test' is not in the allowlist" in out["reason"]
        assert "allow=[...]" in out["reason"]
    else:
        assert "403" in out["error"]
        assert "not in the allowlist" in out["error"]
    assert "egress refused" in stderr
    assert "evil.test" in stderr
    assert web.hosts == before


@pytest.mark.parametrize("name", ["loop.test", "private.test", "meta.test", "six.test"])
async def test_an_allowed_name_mapped_to_a_non_public_address_is_refused(
    jailed: Session, web: Served, name: str
) -> None:
    before = list(web.hosts)
    out, stderr = await _attempt(jailed, f"URL = 'http://{name}:{web.port}/'\n{FETCH}")
    assert out["status"] == 403
    assert "not a public address" in out["reason"]
    assert "allow_addresses" in out["reason"]
    assert name in stderr
    assert web.hosts == before


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "169.254.169.254", "2130706433"])
async def test_ip_literals_are_refused(jailed: Session, web: Served, host: str) -> None:
    before = list(web.hosts)
    out, _ = await _attempt(jailed, f"URL = 'http://{host}:{web.port}/'\n{FETCH}")
    assert out["status"] in (400, 403), out
    assert web.hosts == before


TUNNEL_TLS = """
import os, socket, ssl
out = {}
port = int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])
raw = socket.create_connection(("127.0.0.1", port), timeout=20)
raw.sendall(b"CONNECT index.test:%d HTTP/1.1\\r\\n\\r\\n" % TLS_PORT)
out["connect"] = raw.recv(4096).decode()
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    tls = context.wrap_socket(raw, server_hostname=SNI)
    tls.sendall(b"GET / HTTP/1.1\\r\\nHost: other.test\\r\\n\\r\\n")
    out["reply"] = tls.recv(4096).decode()
except (ssl.SSLError, OSError) as exc:
    out["error"] = repr(exc)
"""


@pytest.mark.parametrize("sni", ["other.test", None])
async def test_domain_fronting_and_missing_sni_cut_the_tunnel(
    jailed: Session, secure: Served, sni: str | None
) -> None:
    code = f"TLS_PORT = {secure.port}\nSNI = {sni!r}\n{TUNNEL_TLS}"
    out, stderr = await _attempt(jailed, code)
    assert out["connect"].startswith("HTTP/1.1 200")
    assert "error" in out
    assert "SNI" in stderr
    assert secure.hosts == []


async def test_bypassing_the_forwarder_finds_no_route(jailed: Session, web: Served) -> None:
    before = list(web.hosts)
    code = f"""
    import socket
    out = {{}}
    for target in [("127.0.0.1", {web.port}), ("10.0.2.2", {web.port}), ("1.1.1.1", 443),
                   ("169.254.169.254", 80)]:
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect(target)
            out[str(target)] = "connected"
        except OSError as exc:
            out[str(target)] = type(exc).__name__
        finally:
            s.close()
    """
    out, _ = await _attempt(jailed, code)
    assert "connected" not in out.values(), out
    assert web.hosts == before


async def test_the_proxy_socket_itself_applies_the_same_rules(jailed: Session, web: Served) -> None:
    before = list(web.hosts)
    code = f"""
    import os, socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(os.environ["PY_CODE_MODE_EGRESS_SOCKET"])
    s.sendall(b"GET http://evil.test:{web.port}/ HTTP/1.1\\r\\n\\r\\n")
    out = {{"reply": s.recv(4096).decode()}}
    """
    out, _ = await _attempt(jailed, code)
    assert out["reply"].startswith("HTTP/1.1 403")
    assert web.hosts == before


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("b'GET http://index.test/ HTTP/1.1\\r\\nX: ' + b'a' * 40000", "431"),
        ("b'GET http://index.test/\\xff\\xfe HTTP/1.1\\r\\n\\r\\n'", "400"),
        ("b'\\xc3\\x28 \\x00\\r\\n\\r\\n'", "400"),
    ],
)
async def test_oversized_and_non_ascii_heads_are_refused(
    jailed: Session, head: str, status: str
) -> None:
    code = f"""
    import os, socket
    port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    try:
        s.sendall({head})
    except OSError:
        pass
    out = {{"reply": s.recv(4096).decode("latin-1")}}
    """
    out, _ = await _attempt(jailed, code)
    assert out["reply"].startswith(f"HTTP/1.1 {status}")


async def test_a_flood_of_connections_is_bounded_and_the_proxy_recovers(
    jailed: Session, web: Served
) -> None:
    code = """
    import os, socket
    port = int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])
    held = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(90)]
    replies = []
    for s in held[-10:]:
        s.settimeout(8)
        try:
            replies.append(s.recv(64).decode())
        except OSError as exc:
            replies.append(type(exc).__name__)
    for s in held:
        s.close()
    out = {"replies": replies}
    """
    out, _ = await _attempt(jailed, code)
    assert any(r.startswith("HTTP/1.1 503") for r in out["replies"]), out
    after, _ = await _attempt(
        jailed,
        f"""
        import time
        URL = 'http://index.test:{web.port}/'
        for _ in range(50):
{textwrap.indent(FETCH, " " * 12)}
            if "body" in out:
                break
            time.sleep(0.2)
        """,
    )
    assert after.get("body") == f"hello from index.test:{web.port}", after
