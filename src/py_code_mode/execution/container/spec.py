"""The hardened settings one container of a configuration is created with.

A :class:`Spec` is everything needed to create a container for a
:class:`~py_code_mode.execution.container.ContainerConfig`: the hardened host
config (no network by default, read-only root, tmpfs work dir and ``/tmp`` with
size limits, all capabilities dropped, ``no-new-privileges``, pids/memory/CPU
limits, an init process, no host mounts or host environment), the environment, the
loader entrypoint and the bootstrap it reads (the worker's files). Its key names the
configuration in the warm pool: equal keys mean interchangeable containers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from py_code_mode.execution._configured import resolve_env
from py_code_mode.execution._egress import SOCKET_ENV, SOCKET_IN_SANDBOX, URL_FILE_ENV
from py_code_mode.execution._isolated.source import WORKER_PACKAGE, worker_sources
from py_code_mode.execution.container.config import ContainerConfig
from py_code_mode.execution.container.reaper import LABEL_POOL, owner_labels

__all__ = ["PRIVATE_DIR", "SITE_DIR", "WORKDIR", "Spec", "build_spec", "with_egress"]

WORKDIR = "/work"
"""The worker's working and home directory: a size-limited tmpfs."""
PRIVATE_DIR = WORKDIR + "/.py-code-mode"
SITE_DIR = PRIVATE_DIR + "/site-packages"
"""Where runtime installs go; the worker imports from it."""
CA_FILE = PRIVATE_DIR + "/ca-bundle.pem"
TOKEN_FILE = PRIVATE_DIR + "/token"
EGRESS_URL_FILE = PRIVATE_DIR + "/egress-proxy"
"""Where the worker writes its forwarder's URL, for installers run with ``docker exec``."""
TMP_SIZE = "64m"

# Runs as ``python3 -c`` in the container: reads one frame (4-byte length + JSON) from
# stdin with unbuffered reads, so the bytes after it stay for the worker, writes the
# files, and starts the worker module.
LOADER = r"""
import os, sys, json
if sys.version_info < (3, 11):
    sys.exit("py-code-mode: the worker needs Python 3.11 or newer; this image has "
             + sys.version.split()[0])
def read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit("py-code-mode: stdin closed before the worker was received")
        data += chunk
    return data
boot = json.loads(read(int.from_bytes(read(4), "big")))
for path in boot["dirs"]:
    os.makedirs(path, exist_ok=True)
for path, text in boot["files"].items():
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
os.chdir(boot["cwd"])
sys.path[:] = [boot["root"]] + [p for p in sys.path if p]
import importlib
main = importlib.import_module(boot["module"]).main
del sys.path[0]
sys.exit(main(boot["argv"]))
"""


@dataclass(frozen=True)
class Spec:
    """Everything needed to create one container for a configuration."""

    key: str
    image: str
    entrypoint: list[str]
    user: str
    environment: dict[str, str]
    host_config: dict[str, Any]
    labels: dict[str, str]
    ports: list[int]
    bootstrap: bytes
    tcp_port: int | None
    token: bytes | None
    startup_timeout: float
    engine: str | None = None
    """URL of the engine the container runs on (None: the environment's engine)."""


def _host_config(config: ContainerConfig) -> dict[str, Any]:
    """The hardened run options (``create_host_config`` arguments) of ``config``."""
    tmpfs_opts = "rw,exec,nosuid,nodev,mode=1777"
    workdir = config.workdir_size
    # Docker gives a tmpfs over a directory of the image that directory's owner and
    # mode; owning it by the worker's numeric user keeps it writable in any image.
    owner = "".join(
        f",{name}={value}"
        for name, value in zip(("uid", "gid"), config.user.split(":"), strict=False)
        if value.isdigit()
    )
    host_config: dict[str, Any] = {
        # allowlist: no network of its own; the proxy socket is bound in per session.
        "network_mode": "none" if config.network == "allowlist" else config.network,
        "read_only": True,
        "tmpfs": {
            WORKDIR: f"{tmpfs_opts},size={workdir}{owner}",
            "/tmp": f"{tmpfs_opts},size={TMP_SIZE}",  # noqa: S108
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "auto_remove": True,
        "log_config": {"type": "none", "config": {}},
        "ipc_mode": "private",
    }
    if config.memory_limit is not None:
        host_config["mem_limit"] = config.memory_limit
        host_config["memswap_limit"] = config.memory_limit
    if config.cpu_limit is not None:
        host_config["nano_cpus"] = int(config.cpu_limit * 1e9)
    if config.pids_limit is not None:
        host_config["pids_limit"] = config.pids_limit
    if config.runtime is not None:
        host_config["runtime"] = config.runtime  # e.g. "runsc": gVisor's own kernel
    if config.transport == "tcp":
        host_config["port_bindings"] = {config.tcp_port: ("127.0.0.1", None)}
    return host_config


def with_egress(spec: Spec, socket_path: str) -> Spec:
    """``spec`` with a session's egress proxy socket bound in and named to the worker."""
    host_config = dict(spec.host_config)
    host_config["binds"] = {socket_path: {"bind": SOCKET_IN_SANDBOX, "mode": "rw"}}
    environment = {
        **spec.environment,
        SOCKET_ENV: SOCKET_IN_SANDBOX,
        URL_FILE_ENV: EGRESS_URL_FILE,
    }
    return dataclasses.replace(spec, host_config=host_config, environment=environment)


def build_spec(config: ContainerConfig) -> Spec:
    """The container settings of ``config`` and their key (blocking: reads files)."""
    files = {
        f"{PRIVATE_DIR}/{WORKER_PACKAGE}/{name}": data.decode("utf-8")
        for name, data in worker_sources().items()
    }
    environment = {
        "HOME": WORKDIR,
        "TMPDIR": "/tmp",  # noqa: S108 - the container's own tmpfs
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }
    if config.ca_bundle is not None:
        files[CA_FILE] = config.ca_bundle.read_text(encoding="utf-8")
        for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            environment[name] = CA_FILE
    environment.update(resolve_env(config.env))
    token: bytes | None = None
    if config.transport == "tcp":
        module = f"{WORKER_PACKAGE}.listen"
        argv = ["--port", str(config.tcp_port)]
        if config.auth_token is None:
            argv.append("--no-auth")
        else:
            token = config.auth_token.encode("utf-8")
            files[TOKEN_FILE] = config.auth_token
            argv += ["--token-file", TOKEN_FILE]
    else:
        module = f"{WORKER_PACKAGE}.server"
        argv = ["--stdio"]
    boot = {
        "files": files,
        "dirs": [SITE_DIR],
        "root": PRIVATE_DIR,
        "cwd": WORKDIR,
        "module": module,
        "argv": argv,
    }
    bootstrap = json.dumps(boot).encode("utf-8")
    host_config = _host_config(config)
    ports = [config.tcp_port] if config.transport == "tcp" else []
    entrypoint = [config.python, "-s", "-B", "-c", LOADER]
    material = json.dumps(
        [
            config.image,
            entrypoint,
            config.user,
            environment,
            host_config,
            hashlib.sha256(bootstrap).hexdigest(),
        ],
        sort_keys=True,
        default=str,
    )
    key = hashlib.sha256(material.encode()).hexdigest()[:16]
    return Spec(
        key=key,
        image=config.image,
        entrypoint=entrypoint,
        user=config.user,
        environment=environment,
        host_config=host_config,
        labels={**owner_labels(), LABEL_POOL: key},
        ports=ports,
        bootstrap=bootstrap,
        tcp_port=config.tcp_port if config.transport == "tcp" else None,
        token=token,
        startup_timeout=config.startup_timeout,
    )
