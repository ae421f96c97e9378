"""A second Docker engine on this machine, reachable only over TLS on 127.0.0.1.

It stands in for a remote engine: its own data-root, exec-root and pidfile, its own
bridge interface and no iptables changes, so it never touches the first engine.
(``--bridge none`` would not do: dockerd then deletes the host's ``docker0``, which
belongs to the first engine, since both share this machine's network namespace.)
Certificates (a CA, a server certificate for 127.0.0.1, a client certificate) are
made with the openssl CLI in the test's directory. The local base image is copied
into it with ``docker save | docker -H ... load``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests._tcp import free_port

START_TIMEOUT = 60.0


def available() -> str | None:
    """Why a second engine cannot be started here, or None when it can."""
    for binary in ("dockerd", "docker", "openssl", "ip"):
        if shutil.which(binary) is None:
            return f"{binary} is not on PATH"
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    done = subprocess.run(["docker", "version"], capture_output=True, check=False, timeout=30)
    if done.returncode != 0:
        return "the first Docker engine is not running (bash .ci/docker.sh starts it)"
    return None


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Path:
    """CA, server (127.0.0.1) and client certificates in ``directory``; returns it.

    The client files follow Docker's ``DOCKER_CERT_PATH`` names: ``ca.pem``,
    ``cert.pem``, ``key.pem``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=test-ca", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
                 "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    shutil.copy(d / "client.pem", d / "cert.pem")
    shutil.copy(d / "client-key.pem", d / "key.pem")
    return d


@dataclass
class RemoteEngine:
    """A running second dockerd: its URL, client certificate dir and process."""

    url: str
    certs: Path
    root: Path
    process: subprocess.Popen[bytes] | None = None

    def docker(self, *args: str, timeout: float = 120, stdin: object = None) -> str:
        """Run the docker CLI against this engine; its stdout."""
        done = subprocess.run(
            ["docker", "--tlsverify", "-H", self.url.replace("tcp://", "tcp://"),
             "--tlscacert", str(self.certs / "ca.pem"), "--tlscert", str(self.certs / "cert.pem"),
             "--tlskey", str(self.certs / "key.pem"), *args],
            capture_output=True, check=True, timeout=timeout, stdin=stdin,  # type: ignore[arg-type]
        )  # fmt: skip
        return done.stdout.decode()

    @property
    def bridge(self) -> str:
        """Name of this engine's own bridge interface (at most 15 characters)."""
        return f"pcmtest{int(self.url.rsplit(':', 1)[1])}"

    def start(self) -> None:
        """Create the engine's bridge, start dockerd and wait until it answers."""
        port = int(self.url.rsplit(":", 1)[1])
        c = self.certs
        subnet = f"10.213.{port % 250}.1/24"
        for command in (
            ["ip", "link", "add", self.bridge, "type", "bridge"],
            ["ip", "addr", "add", subnet, "dev", self.bridge],
        ):
            subprocess.run(command, check=True, capture_output=True, timeout=30)
        log = (self.root / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            ["dockerd",
             "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "dockerd.pid"),
             "-H", f"tcp://127.0.0.1:{port}",
             "--tlsverify", "--tlscacert", str(c / "ca.pem"),
             "--tlscert", str(c / "server.pem"), "--tlskey", str(c / "server-key.pem"),
             "--bridge", self.bridge, "--iptables=false", "--ip6tables=false",
             "--ip-masq=false", "--userland-proxy=false"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.log_tail())
            try:
                self.docker("version", timeout=10)
                return
            except subprocess.SubprocessError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"second dockerd did not answer: {self.log_tail()}"
                    ) from None
                time.sleep(0.3)

    def load_image(self, image: str) -> None:
        """Copy ``image`` from the first engine into this one."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            self.docker("load", stdin=save.stdout, timeout=300)
        finally:
            save.wait(60)

    def kill(self) -> None:
        """Stop the engine and its containers abruptly (SIGKILL), as a crashed host would."""
        pids = []
        try:
            for cid in self.docker("ps", "-q", timeout=30).split():
                pids.append(int(self.docker("inspect", "-f", "{{.State.Pid}}", cid).strip()))
        except (subprocess.SubprocessError, ValueError):
            pass
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        _kill_leftovers(self.root)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def stop(self) -> None:
        """Stop the engine and its containers; remove nothing of the first engine."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                for cid in self.docker("ps", "-aq", timeout=30).split():
                    self.docker("rm", "-f", cid, timeout=60)
            except subprocess.SubprocessError:
                pass
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        _kill_leftovers(self.root)
        _unmount_leftovers(self.root)
        subprocess.run(
            ["ip", "link", "delete", self.bridge], capture_output=True, check=False, timeout=30
        )

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _unmount_leftovers(root: Path) -> None:
    """Lazily unmount what a killed engine left mounted under ``root`` (deepest first)."""
    prefix = str(root)
    mounts = [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if len(line.split()) > 1 and line.split()[1].startswith(prefix)
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False, timeout=30)


def _kill_leftovers(root: Path) -> None:
    """Kill the engine's own containerd and shims if its kill left them (by pidfile dir)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(root) in cmdline and ("containerd" in cmdline):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), 9)


def new_engine(root: Path) -> RemoteEngine:
    """A not yet started engine on a free loopback port, with fresh certificates."""
    root.mkdir(parents=True, exist_ok=True)
    return RemoteEngine(f"tcp://127.0.0.1:{free_port()}", make_certs(root / "certs"), root)
