"""Local HTTP and HTTPS servers that egress tests reach by mapped names.

Everything listens on 127.0.0.1; tests map names (``index.test``) to it with the
proxy's ``hosts`` setting and open loopback with ``allow_addresses``. The HTTPS
server's certificate names ``index.test`` and ``other.test`` and is signed by a test
CA made with the openssl CLI. Each server counts the requests it answered, so a test
can check that a refused attempt never arrived.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Served:
    """A running local server: its port and the Host headers of requests it answered."""

    port: int
    hosts: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)


def _handler(served: Served, version: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = version

        def do_POST(self) -> None:
            served.hosts.append(self.headers.get("Host", ""))
            size = int(self.headers.get("Content-Length", "0"))
            body = f"got {len(self.rfile.read(size))} bytes".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def do_GET(self, head: bool = False) -> None:
            served.hosts.append(self.headers.get("Host", ""))
            body = served.files.get(self.path)
            if body is None:
                body = f"hello from {self.headers.get('Host', '')}".encode()
            self.send_response(200)
            kind = "application/octet-stream" if self.path.endswith(".whl") else "text/html"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def http_server(
    files: dict[str, bytes] | None = None, *, keep_alive: bool = False
) -> Iterator[Served]:
    """A plain HTTP server on 127.0.0.1; ``files`` maps paths to bodies.

    With ``keep_alive`` it speaks HTTP/1.1 and serves several requests per connection.
    """
    served = Served(0, files=dict(files or {}))
    version = "HTTP/1.1" if keep_alive else "HTTP/1.0"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served, version))
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def make_tls_files(directory: Path) -> Path:
    """A test CA (``ca.pem``) and a server certificate for index.test and other.test."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(
            ["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60
        )

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=egress-test-ca")  # fmt: skip
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:index.test,DNS:other.test\nextendedKeyUsage=serverAuth\n"
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem",
            "-out", "server.csr", "-subj", "/CN=index.test")  # fmt: skip
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-days", "2", "-out", "server.pem",
            "-extfile", "server.ext")  # fmt: skip
    return directory


@contextmanager
def https_server(tls_dir: Path) -> Iterator[Served]:
    """An HTTPS server on 127.0.0.1 with the certificate of :func:`make_tls_files`."""
    served = Served(0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served, "HTTP/1.0"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server-key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
