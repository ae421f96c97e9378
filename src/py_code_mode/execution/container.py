"""Container executor: agent code runs in a hardened Docker container, one per session.

The container runs the same worker (:mod:`py_code_mode.worker`) and speaks the same
framed JSON protocol as the subprocess executor; only the way the worker is started
and reached differs:

* **Any image with ``python3`` >= 3.11.** The worker is not baked into the image: the
  container starts a tiny loader (``python3 -c ...``) that reads the worker's source
  files from its stdin, writes them into the size-limited tmpfs work dir and starts
  the worker. The root filesystem stays read-only.
* **Transport.** By default the host attaches to the container's stdin/stdout and
  the protocol flows over them (Docker's stream framing is removed on the host), so
  it works with the network off. ``transport="tcp"`` serves the worker on a port
  published on the host's loopback interface, and every connection must present
  ``auth_token`` (see :mod:`py_code_mode.worker.listen`).
* **Hardened defaults.** No network, read-only root filesystem, tmpfs ``/work`` and
  ``/tmp`` with size limits, user ``65534:65534`` (nobody), all capabilities dropped,
  ``no-new-privileges``, pids/memory/CPU limits, an init process reaping zombies, no
  host mounts and no host environment variables. Tools, storage, search and their
  credentials stay on the host and are reached by RPC over the protocol.
* **Faults.** A run past its timeout is interrupted; if it does not stop, the
  container is removed and the next run gets a new one. A worker that dies (the
  kernel's OOM killer at the memory limit, ``os._exit``) yields an error result.
* **Cleanup.** Containers are removed when the session closes. They are labelled
  with the owning process (pid, its start time, hostname): when the host process
  dies, the attached stdin closes and the worker ends its container (Docker removes
  it); containers left by a process that died anyway are removed by the next
  executor start on the same machine (see :func:`reap_stray_containers`).
* **Warm pool.** With ``warm_pool=N``, N started containers per configuration wait in
  a process-wide pool (their workers already said hello), so a session start (or a
  restart after a timeout) takes a ready container instead of creating one. Fill it
  ahead with :meth:`ContainerExecutor.prewarm`; :func:`drain_warm_pool` empties it.

Runtime deps: with a network, ``deps.add`` installs inside the container (``uv`` when
the image has it, else pip) into a directory of the work dir that the worker imports
from. With ``network="none"`` (the default) it fails with a :class:`DependencyError`
that says how to bake packages into the image or allow a network.

Requires the ``docker`` SDK (``pip install 'py-code-mode[container]'``) and a local
Docker engine (the stdio transport needs a Unix or plain TCP engine socket).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from py_code_mode._private.config import check_path, check_positive, collect_deps
from py_code_mode.errors import ConfigError, DependencyError, ExecutorError, SessionClosedError
from py_code_mode.execution._worker_client import (
    WorkerConnection,
    WorkerDiedError,
    WorkerRunner,
    check_hello,
    closed_result,
    describe_exit,
)
from py_code_mode.result import ExecutionResult
from py_code_mode.worker import wire

if TYPE_CHECKING:
    import docker

    from py_code_mode._private.services import HostServices

__all__ = [
    "DEFAULT_IMAGE",
    "ContainerConfig",
    "ContainerExecutor",
    "drain_warm_pool",
    "reap_stray_containers",
]

logger = logging.getLogger(__name__)

DEFAULT_IMAGE = "py-code-mode-worker:latest"
"""The image built from ``docker/`` by ``py-code-mode image build``."""

LABEL_PREFIX = "py-code-mode."
LABEL_SESSION = LABEL_PREFIX + "session"
LABEL_OWNER_PID = LABEL_PREFIX + "owner-pid"
LABEL_OWNER_START = LABEL_PREFIX + "owner-start"
LABEL_OWNER_HOST = LABEL_PREFIX + "owner-host"
LABEL_POOL = LABEL_PREFIX + "pool"

WORKER_PACKAGE = "py_code_mode_worker"
_WORKDIR = "/work"
_PRIVATE = "/work/.py-code-mode"
_SITE_DIR = _PRIVATE + "/site-packages"
_CA_FILE = _PRIVATE + "/ca-bundle.pem"
_TOKEN_FILE = _PRIVATE + "/token"
_TMP_SIZE = "64m"
_API_TIMEOUT = 120
_KILL_TIMEOUT = 30
_GONE = -(1 << 16)
"""Exit status when the container vanished before its status could be read."""
_MAX_POOL = 32
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Runs as ``python3 -c`` in the container: reads one frame (4-byte length + JSON) from
# stdin with unbuffered reads, so the bytes after it stay for the worker, writes the
# files, and starts the worker module.
_LOADER = r"""
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

# Runs via ``docker exec``: distributions visible to the worker, as [[name, version]].
_LIST_SCRIPT = r"""
import json, sys
from importlib import metadata
paths = [sys.argv[1]] + [p for p in sys.path if p]
found = []
for dist in metadata.distributions(path=paths):
    name = dist.metadata["Name"] if dist.metadata else None
    if name:
        found.append([name, dist.version])
print(json.dumps(found))
"""

# Runs via ``docker exec``: installs specs into the worker's package directory with uv
# when the image has it, else pip (bootstrapped into a venv when missing).
_INSTALL_SCRIPT = r"""
import json, os, shutil, subprocess, sys
args = json.loads(sys.argv[1])
target, specs, timeout = args["target"], args["specs"], args["timeout"]
uv = shutil.which("uv")
if uv:
    cmd = [uv, "pip", "install", "--python", sys.executable, "--target", target, *specs]
else:
    try:
        import pip  # noqa: F401
        python = sys.executable
    except ImportError:
        venv = args["pip_venv"]
        python = os.path.join(venv, "bin", "python")
        if not os.path.exists(python):
            print("no uv or pip in the image: bootstrapping pip with python -m venv", flush=True)
            made = subprocess.run([sys.executable, "-m", "venv", venv], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=timeout)
            if made.returncode:
                sys.stdout.write(made.stdout.decode(errors="replace"))
                print("the image has neither uv nor pip nor a working venv module; "
                      "bake the packages into the image instead")
                sys.exit(made.returncode)
    cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-cache-dir", "--target", target, *specs]
try:
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
except subprocess.TimeoutExpired:
    print(f"the installer did not finish within {timeout} s")
    sys.exit(124)
sys.stdout.write(done.stdout.decode(errors="replace"))
sys.exit(done.returncode)
"""

# Runs via ``docker exec``: removes distributions from the worker's package directory
# using their RECORD files (pip has no --target uninstall).
_UNINSTALL_SCRIPT = r"""
import json, os, re, shutil, sys
from importlib import metadata
args = json.loads(sys.argv[1])
target = args["target"]
def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()
wanted = {canon(n) for n in args["names"]}
removed = []
for dist in metadata.distributions(path=[target]):
    name = dist.metadata["Name"] if dist.metadata else None
    if not name or canon(name) not in wanted:
        continue
    dirs = set()
    for entry in dist.files or ():
        path = os.path.realpath(str(dist.locate_file(entry)))
        if not path.startswith(os.path.realpath(target) + os.sep):
            continue
        dirs.add(os.path.dirname(path))
        try:
            os.remove(path)
        except OSError:
            pass
    for path in sorted(dirs, key=len, reverse=True):
        while path.startswith(os.path.realpath(target) + os.sep):
            if path.endswith((".dist-info", "__pycache__")):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.rmdir(path)
                except OSError:
                    break
            path = os.path.dirname(path)
    removed.append(name)
print(json.dumps(removed))
"""


# -- configuration -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerConfig:
    """Settings of the container executor.

    Attributes:
        image: Image to run; any image with ``python`` >= 3.11 works (the worker is
            copied in at start). The default is the image ``docker/`` builds.
        python: Interpreter inside the image.
        tools_path: Directory of tool YAML files (tools run on the host).
        deps: Requirement specs the session needs; missing ones are installed at
            start when the container has a network, else the start fails.
        deps_file: A requirements file read at construction (ignored when absent).
        allow_runtime_deps: Let agent code add and remove packages.
        timeout: Seconds a run may take when ``run`` gets no timeout; None for no
            limit. ``default_timeout`` is the same setting under the subprocess
            executor's name; give one of them.
        default_timeout: See ``timeout``.
        startup_timeout: Seconds a container may take to start and answer.
        install_timeout: Seconds one install inside the container may take.
        interrupt_grace: Seconds an interrupted run gets to stop before the container
            is removed and replaced.
        output_limit: Characters of output kept per run.
        memory_limit: Memory of the container (``"512m"``, ``"2g"``, or bytes);
            None for no limit. Swap is not added on top.
        cpu_limit: CPUs the container may use (``1.5``); None for no limit.
        pids_limit: Processes and threads in the container; None for no limit.
        network: ``"none"`` (no network, the default), ``"bridge"`` or the name of a
            Docker network. ``"host"`` is refused: it would expose the host's network.
        environment: Variables set in the container. A string value sets the
            variable; ``None`` copies it from the host when set there. Nothing else
            from the host environment enters the container.
        workdir_size: Size of the writable tmpfs work dir ``/work`` (also the home
            directory and where runtime deps go).
        user: ``uid:gid`` (or a user name of the image) the worker runs as.
        transport: ``"stdio"`` (the container's attached stdin/stdout; works without
            a network) or ``"tcp"`` (a port published on 127.0.0.1, authenticated with
            ``auth_token``; needs a network).
        auth_token: Shared secret every TCP connection must present (at least 16
            characters); ignored with the stdio transport.
        allow_unauthenticated: Allow ``transport="tcp"`` without ``auth_token``. Only
            for networks where every client is trusted.
        tcp_port: Port the worker listens on inside the container (TCP transport).
        warm_pool: Started containers to keep ready for new sessions with this
            configuration (process-wide); 0 disables the pool.
        ca_bundle: A PEM file copied into the container and used by installers and
            Python's ``ssl`` (``SSL_CERT_FILE``): for HTTPS behind an intercepting proxy.
    """

    image: str = DEFAULT_IMAGE
    python: str = "python3"
    tools_path: Path | None = None
    deps: tuple[str, ...] = ()
    deps_file: Path | None = None
    allow_runtime_deps: bool = True
    timeout: float | None = None
    default_timeout: float | None = None
    startup_timeout: float = 30.0
    install_timeout: float = 600.0
    interrupt_grace: float = 0.5
    output_limit: int = 1_000_000
    memory_limit: str | int | None = "1g"
    cpu_limit: float | None = 1.0
    pids_limit: int | None = 256
    network: str = "none"
    environment: Mapping[str, str | None] = field(default_factory=dict)
    workdir_size: str | int = "512m"
    user: str = "65534:65534"
    transport: Literal["stdio", "tcp"] = "stdio"
    auth_token: str | None = field(default=None, repr=False)
    allow_unauthenticated: bool = False
    tcp_port: int = 8777
    warm_pool: int = 0
    ca_bundle: Path | None = None
    _validated_deps: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("tools_path", "deps_file", "ca_bundle"):
            object.__setattr__(self, name, check_path(owner, name, getattr(self, name)))
        for name in ("image", "python", "user", "network"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise ConfigError(f"{owner}.{name} must be a non-empty string, got {value!r}")
        if self.network == "host" or self.network.startswith("container:"):
            raise ConfigError(
                f"{owner}.network={self.network!r} would share another network stack and "
                "defeat the sandbox; use 'none' (the default), 'bridge' or a Docker network name"
            )
        for name in ("allow_runtime_deps", "allow_unauthenticated"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{owner}.{name} must be True or False")
        for name in ("timeout", "default_timeout"):
            check_positive(owner, name, getattr(self, name), allow_none=True)
        if (
            self.timeout is not None
            and self.default_timeout is not None
            and self.timeout != self.default_timeout
        ):
            raise ConfigError(
                f"{owner}: timeout and default_timeout are the same setting; give only one"
            )
        for name in ("startup_timeout", "install_timeout", "interrupt_grace"):
            check_positive(owner, name, getattr(self, name))
        check_positive(owner, "cpu_limit", self.cpu_limit, allow_none=True)
        for name, low in (("output_limit", 1), ("pids_limit", 8), ("tcp_port", 1)):
            value = getattr(self, name)
            if value is None and name == "pids_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{owner}.{name} must be an integer >= {low}, got {value!r}")
        if self.tcp_port > 65535:
            raise ConfigError(f"{owner}.tcp_port must be at most 65535, got {self.tcp_port}")
        pool = self.warm_pool
        if isinstance(pool, bool) or not isinstance(pool, int) or not 0 <= pool <= _MAX_POOL:
            raise ConfigError(f"{owner}.warm_pool must be an integer from 0 to {_MAX_POOL}")
        if self.memory_limit is not None:
            _size_bytes(owner, "memory_limit", self.memory_limit, minimum=64 << 20)
        _size_bytes(owner, "workdir_size", self.workdir_size, minimum=16 << 20)
        if self.transport not in ("stdio", "tcp"):
            raise ConfigError(f"{owner}.transport must be 'stdio' or 'tcp', got {self.transport!r}")
        self._check_auth(owner)
        if self.ca_bundle is not None and not self.ca_bundle.is_file():
            raise ConfigError(f"{owner}.ca_bundle {self.ca_bundle} is not a file")
        object.__setattr__(self, "environment", _check_env(owner, self.environment))
        object.__setattr__(self, "_validated_deps", collect_deps(owner, self.deps, self.deps_file))

    def _check_auth(self, owner: str) -> None:
        token = self.auth_token
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ConfigError(
                f"{owner}.auth_token must be a string of at least 16 characters; make one "
                "with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.transport != "tcp":
            return
        if token is None and not self.allow_unauthenticated:
            raise ConfigError(
                f"{owner}: transport='tcp' needs an auth_token so that only this host can "
                "drive the worker; set allow_unauthenticated=True only on a trusted network"
            )
        if self.network == "none":
            raise ConfigError(
                f"{owner}: transport='tcp' needs a network; set network='bridge' (or a Docker "
                "network name), or use transport='stdio', which works without one"
            )

    @property
    def run_timeout(self) -> float | None:
        """The default run timeout (``timeout`` or ``default_timeout``)."""
        return self.timeout if self.timeout is not None else self.default_timeout


def _size_bytes(owner: str, name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        size = -1
    elif isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        size = int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    else:
        raise ConfigError(
            f"{owner}.{name} must be a size such as '512m' or '2g' (or bytes), got {value!r}"
        )
    if size < minimum:
        raise ConfigError(f"{owner}.{name} must be at least {minimum >> 20} MiB, got {value!r}")
    return size


def _check_env(owner: str, env: Any) -> dict[str, str | None]:
    if not isinstance(env, Mapping):
        raise ConfigError(
            f"{owner}.environment must be a mapping of names to str (set) or None (copy "
            f"from the host), got {type(env).__name__}"
        )
    checked: dict[str, str | None] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            raise ConfigError(f"{owner}.environment: {name!r} is not a valid variable name")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ConfigError(
                f"{owner}.environment[{name!r}] must be a string without NUL characters or "
                f"None, got {value!r}"
            )
        checked[name] = value
    return checked


# -- the engine ----------------------------------------------------------------------------
_client_lock = threading.Lock()
_clients: dict[str, docker.APIClient] = {}
_checked_images: set[str] = set()
_reaped = threading.Event()
_live: set[str] = set()
"""Containers this process started and has not removed yet (removed at exit)."""


def _api(kind: str = "default") -> docker.APIClient:
    """The process's Docker API client (``"unbounded"``: no read timeout, for execs).

    Raises:
        ConfigError: The docker SDK is not installed.
        ExecutorError: No engine is reachable.
    """
    client = _clients.get(kind)
    if client is not None:
        return client
    with _client_lock:
        client = _clients.get(kind)
        if client is not None:
            return client
        try:
            import docker
        except ImportError as exc:
            raise ConfigError(
                "the container executor needs the docker SDK: pip install 'py-code-mode[container]'"
            ) from exc
        try:
            timeout = _API_TIMEOUT if kind == "default" else None
            env_client = docker.from_env(timeout=timeout, max_pool_size=64)  # type: ignore[arg-type]
            env_client.api.ping()
        except docker.errors.DockerException as exc:
            raise ExecutorError(
                f"no Docker engine is reachable ({exc}); start it (`sudo systemctl start "
                "docker` or `dockerd &`), make sure this user may use /var/run/docker.sock, "
                "or set DOCKER_HOST"
            ) from exc
        client = env_client.api
        _clients[kind] = client
        return client


def _docker_errors() -> Any:
    import docker.errors

    return docker.errors


def _check_image(api: docker.APIClient, image: str) -> None:
    if image in _checked_images:
        return
    errors = _docker_errors()
    try:
        api.inspect_image(image)  # type: ignore[no-untyped-call]
    except errors.ImageNotFound as exc:
        raise ConfigError(
            f"the image {image!r} is not present on the Docker engine; build the default "
            "image with `py-code-mode image build` (see docker/README.md), `docker pull` it, "
            "or set ContainerConfig.image to an image with python3 >= 3.11"
        ) from exc
    except errors.APIError as exc:
        raise ExecutorError(f"could not inspect the image {image!r}: {exc}") from exc
    _checked_images.add(image)


def _process_start(pid: int) -> str:
    """The start time of ``pid`` (clock ticks since boot), or "" where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return ""


def _owner_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not start or _process_start(pid) in ("", start)


def _owner_labels() -> dict[str, str]:
    pid = os.getpid()
    return {
        LABEL_OWNER_PID: str(pid),
        LABEL_OWNER_START: _process_start(pid),
        LABEL_OWNER_HOST: socket.gethostname(),
    }


def _reap_strays_blocking() -> int:
    api = _api()
    errors = _docker_errors()
    host = socket.gethostname()
    removed = 0
    try:
        found = api.containers(all=True, filters={"label": LABEL_OWNER_PID})
    except errors.APIError as exc:
        logger.warning("could not list containers to clean up strays: %s", exc)
        return 0
    for info in found:
        labels = info.get("Labels") or {}
        if labels.get(LABEL_OWNER_HOST) != host:
            continue
        try:
            pid = int(labels.get(LABEL_OWNER_PID, ""))
        except ValueError:
            continue
        if _owner_alive(pid, labels.get(LABEL_OWNER_START, "")):
            continue
        with contextlib.suppress(errors.NotFound, errors.APIError):
            api.remove_container(info["Id"], force=True)
            removed += 1
    if removed:
        logger.info("removed %d container(s) left behind by processes that died", removed)
    return removed


async def reap_stray_containers() -> int:
    """Remove py-code-mode containers whose owning process on this machine is gone.

    Runs automatically once per process at the first executor start; returns how
    many containers were removed.

    Raises:
        ExecutorError: No Docker engine is reachable.
    """
    return await asyncio.to_thread(_reap_strays_blocking)


class _OomEvents:
    """Ids of this process's containers that hit their memory limit (Docker "oom" events).

    A container removed after its exit can no longer be inspected, so the kernel's
    OOM kills are learned from the engine's event stream, watched by one thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: set[str] = set()
        self._started = False

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._watch, name="py-code-mode-oom-events", daemon=True).start()

    def _watch(self) -> None:
        filters = {
            "type": "container",
            "event": ["oom"],
            "label": [f"{LABEL_OWNER_PID}={os.getpid()}"],
        }
        try:
            for event in _api("unbounded").events(filters=filters, decode=True):
                container_id = event.get("id") if isinstance(event, dict) else None
                if isinstance(container_id, str):
                    with self._lock:
                        self._ids.add(container_id)
        except Exception:  # without events, exits are only less precisely named
            logger.debug("the Docker event stream ended", exc_info=True)
            with self._lock:
                self._started = False

    def seen(self, container_id: str, wait: float = 0.0) -> bool:
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                if container_id in self._ids:
                    self._ids.discard(container_id)
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


_oom_events = _OomEvents()


def _remove_container(container_id: str) -> None:
    errors = _docker_errors()
    try:
        _api().remove_container(container_id, force=True)
    except errors.NotFound:
        pass
    except errors.APIError as exc:
        if exc.status_code != 409:  # 409: removal already in progress
            logger.warning("could not remove container %s: %s", container_id[:12], exc)
    _live.discard(container_id)


def _remove_in_background(container_id: str) -> None:
    threading.Thread(
        target=_remove_container,
        args=(container_id,),
        name=f"py-code-mode-rm-{container_id[:12]}",
        daemon=True,
    ).start()


@atexit.register
def _remove_all_at_exit() -> None:
    _pool.close()
    for container_id in list(_live):
        with contextlib.suppress(Exception):
            _remove_container(container_id)


# -- launching ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
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


_worker_sources: dict[str, str] = {}


def _worker_files() -> dict[str, str]:
    """The worker package's source files (the same ones the subprocess executor copies)."""
    if not _worker_sources:
        source = Path(__file__).resolve().parent.parent / "worker"
        for path in sorted(source.glob("*.py")):
            _worker_sources[path.name] = path.read_text(encoding="utf-8")
    return dict(_worker_sources)


def _build_spec(config: ContainerConfig) -> _Spec:
    files = {f"{_PRIVATE}/{WORKER_PACKAGE}/{name}": text for name, text in _worker_files().items()}
    environment = {
        "HOME": _WORKDIR,
        "TMPDIR": "/tmp",  # noqa: S108 - the container's own tmpfs
        "LANG": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }
    if config.ca_bundle is not None:
        files[_CA_FILE] = config.ca_bundle.read_text(encoding="utf-8")
        for name in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            environment[name] = _CA_FILE
    for name, value in config.environment.items():
        if value is not None:
            environment[name] = value
        elif name in os.environ:
            environment[name] = os.environ[name]
    token: bytes | None = None
    if config.transport == "tcp":
        module = f"{WORKER_PACKAGE}.listen"
        argv = ["--port", str(config.tcp_port)]
        if config.auth_token is None:
            argv.append("--no-auth")
        else:
            token = config.auth_token.encode("utf-8")
            files[_TOKEN_FILE] = config.auth_token
            argv += ["--token-file", _TOKEN_FILE]
    else:
        module = f"{WORKER_PACKAGE}.server"
        argv = ["--stdio"]
    boot = {
        "files": files,
        "dirs": [_SITE_DIR],
        "root": _PRIVATE,
        "cwd": _WORKDIR,
        "module": module,
        "argv": argv,
    }
    bootstrap = json.dumps(boot).encode("utf-8")
    tmpfs_opts = "rw,exec,nosuid,nodev,mode=1777"
    workdir = _size_bytes("ContainerConfig", "workdir_size", config.workdir_size, minimum=0)
    # Docker gives a tmpfs over a directory of the image that directory's owner and
    # mode; owning it by the worker's numeric user keeps it writable in any image.
    owner = "".join(
        f",{name}={value}"
        for name, value in zip(("uid", "gid"), config.user.split(":"), strict=False)
        if value.isdigit()
    )
    host_config: dict[str, Any] = {
        "network_mode": config.network,
        "read_only": True,
        "tmpfs": {
            _WORKDIR: f"{tmpfs_opts},size={workdir}{owner}",
            "/tmp": f"{tmpfs_opts},size={_TMP_SIZE}",  # noqa: S108
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "init": True,
        "auto_remove": True,
        "log_config": {"type": "none", "config": {}},
        "ipc_mode": "private",
    }
    if config.memory_limit is not None:
        memory = _size_bytes("ContainerConfig", "memory_limit", config.memory_limit, minimum=0)
        host_config["mem_limit"] = memory
        host_config["memswap_limit"] = memory
    if config.cpu_limit is not None:
        host_config["nano_cpus"] = int(config.cpu_limit * 1e9)
    if config.pids_limit is not None:
        host_config["pids_limit"] = config.pids_limit
    ports: list[int] = []
    if config.transport == "tcp":
        ports = [config.tcp_port]
        host_config["port_bindings"] = {config.tcp_port: ("127.0.0.1", None)}
    entrypoint = [config.python, "-s", "-B", "-c", _LOADER]
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
    return _Spec(
        key=key,
        image=config.image,
        entrypoint=entrypoint,
        user=config.user,
        environment=environment,
        host_config=host_config,
        labels={**_owner_labels(), LABEL_POOL: key},
        ports=ports,
        bootstrap=bootstrap,
        tcp_port=config.tcp_port if config.transport == "tcp" else None,
        token=token,
        startup_timeout=config.startup_timeout,
    )


class _ExitWatch:
    """Waits (in a thread) for a container to be removed and keeps its exit status.

    Started before the container, so no exit can be missed; callbacks run on the
    event loop of whoever owns the container by then.
    """

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self._lock = threading.Lock()
        self.status: int | None = None
        self.oom = False
        self.done = False
        self._callbacks: list[tuple[asyncio.AbstractEventLoop, Callable[[int], None]]] = []
        threading.Thread(
            target=self._wait, name=f"py-code-mode-wait-{container_id[:12]}", daemon=True
        ).start()

    def _wait(self) -> None:
        errors = _docker_errors()
        status = _GONE
        try:
            answer = _api("unbounded").wait(self.container_id, condition="removed")
            status = int(answer.get("StatusCode", _GONE))
        except (errors.DockerException, OSError, ValueError):
            status = _GONE
        except Exception:
            logger.debug("waiting for container %s failed", self.container_id[:12], exc_info=True)
        # SIGKILL: the "oom" event (sent before the exit) says whether memory ran out.
        oom = status == 137 and _oom_events.seen(self.container_id, wait=0.2)
        with self._lock:
            self.status = status
            self.oom = oom
            self.done = True
            callbacks, self._callbacks = self._callbacks, []
        for loop, callback in callbacks:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(callback, status)

    def subscribe(self, loop: asyncio.AbstractEventLoop, callback: Callable[[int], None]) -> None:
        with self._lock:
            if not self.done:
                self._callbacks.append((loop, callback))
                return
            status = self.status if self.status is not None else _GONE
        loop.call_soon_threadsafe(callback, status)


class _DockerDemux:
    """Splits Docker's multiplexed attach stream into (stream number, bytes) chunks.

    Without a TTY, Docker prefixes every chunk with an 8-byte header: the stream
    (1 stdout, 2 stderr), three zero bytes and the big-endian payload length.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._stream = 0
        self._remaining = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        chunks: list[tuple[int, bytes]] = []
        while buffer:
            if not self._remaining:
                if len(buffer) < 8:
                    break
                self._stream = buffer[0]
                self._remaining = int.from_bytes(buffer[4:8], "big")
                del buffer[:8]
                continue
            take = min(self._remaining, len(buffer))
            chunks.append((self._stream, bytes(buffer[:take])))
            del buffer[:take]
            self._remaining -= take
        return chunks


@dataclass
class _Launched:
    """A started container whose worker is ready: it said hello (stdio) or listens (TCP).

    ``stdout`` holds demultiplexed protocol bytes read past the hello, ``demux`` the
    state of a Docker frame read halfway; whoever adopts the container continues there.
    """

    container_id: str
    session: str
    attach: socket.socket
    keepalive: Any
    watch: _ExitWatch
    host_port: int | None
    demux: _DockerDemux = field(default_factory=_DockerDemux)
    stdout: bytearray = field(default_factory=bytearray)
    stderr_tail: bytes = b""
    hello: dict[str, Any] | None = None
    created: float = field(default_factory=time.monotonic)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.attach.close()
        _remove_container(self.container_id)

    def wait_ready(self, timeout: float) -> None:
        """Read the attach stream until the worker is ready (blocking).

        Raises:
            ExecutorError: The worker ended or did not get ready in time.
        """
        deadline = time.monotonic() + timeout
        sock = self.attach
        while not self._ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExecutorError(f"the worker did not start within {timeout:g} s")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                raise ExecutorError("the worker exited while starting")
            for stream, chunk in self.demux.feed(data):
                if stream == 1:
                    self.stdout += chunk
                elif stream == 2:
                    self.stderr_tail = (self.stderr_tail + chunk)[-4000:]
        sock.settimeout(None)

    def _ready(self) -> bool:
        if self.host_port is not None:
            return b"listening on" in self.stderr_tail
        if self.hello is not None:
            return True
        if len(self.stdout) < 4:
            return False
        length = int.from_bytes(self.stdout[:4], "big")
        if length > 1 << 20:
            raise ExecutorError("the worker sent an oversized first message")
        if len(self.stdout) < 4 + length:
            return False
        message = wire.decode_body(bytes(self.stdout[4 : 4 + length]))
        del self.stdout[: 4 + length]
        if message.get("kind") != "hello":
            raise ExecutorError(f"the worker began with {message.get('kind')!r}, not hello")
        self.hello = message
        return True


def _raw_socket(attached: Any) -> socket.socket:
    import ssl

    raw = getattr(attached, "_sock", attached)
    if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
        raise ExecutorError(
            "attaching to a container's stdio is only supported over a local (Unix socket) "
            "or plain TCP Docker connection; use transport='tcp' with this engine"
        )
    return raw


def _launch(spec: _Spec, timeout: float) -> _Launched:
    """Create, attach, start and bootstrap one container; wait until its worker is ready.

    Blocking; ``timeout`` bounds the wait for the worker.

    Raises:
        ConfigError: The image is missing or the settings are refused by the engine.
        ExecutorError: The engine failed.
    """
    api = _api()
    errors = _docker_errors()
    session = uuid.uuid4().hex
    try:
        created = api.create_container(
            spec.image,
            entrypoint=spec.entrypoint,
            user=spec.user,
            stdin_open=True,
            environment=spec.environment,
            labels={**spec.labels, LABEL_SESSION: session},
            host_config=api.create_host_config(**spec.host_config),
            name=f"py-code-mode-{session[:12]}",
            ports=spec.ports or None,
            hostname="sandbox",
            # Not the tmpfs: Docker would make a working dir it mounts over root-owned 0755.
            working_dir="/",
            use_config_proxy=False,
        )
    except errors.ImageNotFound as exc:
        _checked_images.discard(spec.image)
        raise ConfigError(
            f"the image {spec.image!r} is not present on the Docker engine; build it with "
            "`py-code-mode image build` or set ContainerConfig.image"
        ) from exc
    except errors.APIError as exc:
        raise ExecutorError(f"Docker refused to create the container: {exc}") from exc
    container_id = str(created["Id"])
    _live.add(container_id)
    attached: Any = None
    try:
        attached = api.attach_socket(
            container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        )
        raw = _raw_socket(attached)
        watch = _ExitWatch(container_id)
        api.start(container_id)
        raw.setblocking(True)
        raw.sendall(len(spec.bootstrap).to_bytes(4, "big") + spec.bootstrap)
        host_port = None
        if spec.tcp_port is not None:
            info = api.inspect_container(container_id)
            bindings = info["NetworkSettings"]["Ports"][f"{spec.tcp_port}/tcp"]
            host_port = int(bindings[0]["HostPort"])
        launched = _Launched(container_id, session, raw, attached, watch, host_port)
        try:
            launched.wait_ready(timeout)
        except (ExecutorError, wire.WireError, OSError) as exc:
            tail = launched.stderr_tail.decode(errors="replace").strip()
            raise ExecutorError(f"{exc}" + (f"\n{tail}" if tail else "")) from None
    except BaseException as exc:
        with contextlib.suppress(Exception):
            if attached is not None:
                attached.close()
        _remove_container(container_id)
        if isinstance(exc, errors.APIError):
            raise ExecutorError(
                f"Docker could not start the container from {spec.image!r}: {exc}"
            ) from exc
        if isinstance(exc, OSError | KeyError | IndexError | TypeError):
            raise ExecutorError(f"could not connect to the new container: {exc}") from exc
        raise
    return launched


# -- the warm pool ---------------------------------------------------------------------------
class _WarmPool:
    """Started containers waiting for sessions, per configuration key, process-wide.

    Filled by one background thread per key, so it is independent of event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, deque[_Launched]] = {}
        self._targets: dict[str, int] = {}
        self._filling: set[str] = set()
        self._failures: dict[str, str] = {}
        self._closed = False

    def take(self, spec: _Spec) -> _Launched | None:
        while True:
            with self._lock:
                queue = self._ready.get(spec.key)
                launched = queue.popleft() if queue else None
            if launched is None:
                return None
            if not launched.watch.done:
                return launched
            launched.discard()

    def count(self, key: str) -> int:
        with self._lock:
            return len(self._ready.get(key, ()))

    def ids(self, key: str) -> list[str]:
        with self._lock:
            return [item.container_id for item in self._ready.get(key, ())]

    def failure(self, key: str) -> str:
        with self._lock:
            return self._failures.get(key, "")

    def ensure(self, spec: _Spec, target: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._targets[spec.key] = max(target, self._targets.get(spec.key, 0))
            if spec.key in self._filling:
                return
            self._filling.add(spec.key)
            self._failures.pop(spec.key, None)
        threading.Thread(
            target=self._fill, args=(spec,), name=f"py-code-mode-pool-{spec.key}", daemon=True
        ).start()

    def _fill(self, spec: _Spec) -> None:
        try:
            while True:
                with self._lock:
                    queue = self._ready.setdefault(spec.key, deque())
                    for stale in [item for item in queue if item.watch.done]:
                        queue.remove(stale)
                    if len(queue) >= self._targets.get(spec.key, 0):
                        return
                try:
                    launched = _launch(spec, spec.startup_timeout)
                except Exception as exc:  # noqa: BLE001 - the pool is an optimisation
                    with self._lock:
                        if self._closed or spec.key not in self._targets:
                            return  # drained meanwhile: the failure is ours
                        self._failures[spec.key] = str(exc)
                    logger.warning("could not fill the warm pool: %s", exc)
                    return
                with self._lock:
                    if spec.key in self._targets and not self._closed:
                        self._ready.setdefault(spec.key, deque()).append(launched)
                        launched = None  # type: ignore[assignment]
                if launched is not None:
                    launched.discard()
                    return
        finally:
            with self._lock:
                self._filling.discard(spec.key)

    def drain(self, key: str | None = None) -> int:
        with self._lock:
            keys = list(self._ready) if key is None else [key]
            items = [item for k in keys for item in self._ready.pop(k, ())]
            for k in keys:
                self._targets.pop(k, None)
        for item in items:
            item.discard()
        return len(items)

    def close(self) -> None:
        """Drain everything and stop refilling (at interpreter exit)."""
        with self._lock:
            self._closed = True
        self.drain(None)


_pool = _WarmPool()


async def drain_warm_pool(config: ContainerConfig | None = None) -> int:
    """Remove the pooled containers of ``config`` (all of them when None).

    Returns how many were removed. Pools are also emptied when the process exits.
    """
    key = None if config is None else (await asyncio.to_thread(_build_spec, config)).key
    return await asyncio.to_thread(_pool.drain, key)


# -- one container ----------------------------------------------------------------------------
class _AttachProtocol(asyncio.StreamReaderProtocol):
    """The container's attach stream on the event loop: stdout to the reader, stderr kept.

    Continues the demultiplexing a :class:`_Launched` started while it waited for the
    worker.
    """

    def __init__(
        self, reader: asyncio.StreamReader, launched: _Launched, *, carries_protocol: bool
    ) -> None:
        super().__init__(reader)
        self._demux = launched.demux
        self._carries_protocol = carries_protocol
        self.stderr_tail = launched.stderr_tail
        if carries_protocol and launched.stdout:
            reader.feed_data(bytes(launched.stdout))
            launched.stdout.clear()

    def data_received(self, data: bytes) -> None:
        for stream, chunk in self._demux.feed(data):
            if stream == 1:
                if self._carries_protocol:
                    super().data_received(chunk)
            elif stream == 2:
                self.stderr_tail = (self.stderr_tail + chunk)[-4000:]


class _ContainerWorker(WorkerConnection):
    """The worker in one container: removing the container ends it."""

    noun = "worker container"

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: HostServices,
        *,
        launched: _Launched,
        attach: asyncio.BaseTransport,
        protocol: _AttachProtocol,
        memory_limit: str | int | None,
        max_frame: int,
        output_limit: int,
    ) -> None:
        super().__init__(
            reader,
            writer,
            host,
            label=launched.container_id[:12],
            max_frame=max_frame,
            output_limit=output_limit,
        )
        self.launched = launched
        self.container_id = launched.container_id
        self._attach = attach
        self._protocol = protocol
        self._memory_limit = memory_limit
        self._removing = False

    @property
    def stderr_tail(self) -> str:
        return self._protocol.stderr_tail.decode(errors="replace").strip()

    def _terminate(self) -> None:
        if not self._removing:
            self._removing = True
            _remove_in_background(self.container_id)

    def _release(self) -> None:
        self._attach.close()

    def on_container_exit(self, status: int) -> None:
        self._exited(status)

    def check_alive(self) -> bool:
        watch = self.launched.watch
        if not self.dead.is_set() and watch.done:
            self._exited(watch.status if watch.status is not None else _GONE)
        return not self.dead.is_set()

    def describe_exit(self, returncode: int) -> str:
        if returncode == _GONE:
            return "disappeared (its container was removed from outside)"
        if 128 < returncode < 160:  # Docker's (and the init's) way to report a signal
            returncode = 128 - returncode
        if returncode == -9 and self.launched.watch.oom:
            limit = "" if self._memory_limit is None else f" ({self._memory_limit})"
            return f"was killed by the kernel: the container reached its memory limit{limit}"
        return describe_exit(returncode)


# -- the executor -------------------------------------------------------------------------------
class ContainerExecutor(WorkerRunner):
    """Runs agent code in a hardened Docker container with its own Python.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: ContainerConfig | None = None) -> None:
        if config is not None and not isinstance(config, ContainerConfig):
            raise ConfigError(
                f"ContainerExecutor expects a ContainerConfig, got {type(config).__name__}"
            )
        self.config = config or ContainerConfig()
        self._host: HostServices | None = None
        self._handle: _ContainerWorker | None = None
        self._spec: _Spec | None = None
        self._lock = asyncio.Lock()
        self._install_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._started = False
        self._closed = False
        self._runtime_specs: list[str] = []
        self._max_frame = max(wire.DEFAULT_MAX_FRAME, 8 * self.config.output_limit + (1 << 20))

    # -- Executor protocol -------------------------------------------------------------
    @property
    def tools_path(self) -> Path | None:
        """Directory of tool YAML files."""
        return self.config.tools_path

    @property
    def allow_runtime_deps(self) -> bool:
        """Whether agent code may add and remove packages."""
        return self.config.allow_runtime_deps

    @property
    def configured_deps(self) -> list[str]:
        """Specs from ``deps`` and ``deps_file``."""
        return list(self.config._validated_deps)

    @property
    def container_id(self) -> str | None:
        """Id of the live container, if any (for diagnostics and tests)."""
        handle = self._handle
        return None if handle is None or handle.dead.is_set() else handle.container_id

    @property
    def tcp_address(self) -> tuple[str, int] | None:
        """Where the live worker listens on this host (TCP transport only)."""
        handle = self._handle
        if handle is None or handle.launched.host_port is None:
            return None
        return ("127.0.0.1", handle.launched.host_port)

    @property
    def _interrupt_grace(self) -> float:
        return self.config.interrupt_grace

    async def start(self, host: HostServices) -> None:
        """Start the container and its worker; install missing deps if allowed.

        Raises:
            SessionClosedError: The executor was closed.
            ConfigError: The docker SDK or the image is missing, or the engine refused
                the settings.
            DependencyError: Required packages are missing and cannot be installed.
            ExecutorError: No engine is reachable, or the worker did not start.
        """
        if self._closed:
            raise SessionClosedError("this executor was closed; create a new one")
        async with self._lock:
            if self._started or self._closed:
                return
            self._host = host
            self._spec = await asyncio.to_thread(_prepare_engine_for, self.config)
            self._handle = await self._spawn()
            try:
                wanted = [*self.configured_deps, *await host.storage.list_deps()]
                await self._ensure_deps(list(dict.fromkeys(wanted)), strict=True)
            except BaseException:
                handle, self._handle = self._handle, None
                if handle is not None:
                    await handle.kill("was stopped because the session could not start")
                raise
            self._started = True

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run code in the container; interrupt it (then replace the container) past ``timeout``."""
        if not self._started or self._host is None:
            raise SessionClosedError("executor is not started")
        if timeout is None:
            timeout = self.config.run_timeout
        async with self._lock:
            if self._closed:
                return closed_result()
            return await self._run_locked(code, timeout)

    async def reset(self) -> None:
        """Forget the agent's variables (a fresh container if the current one is gone)."""
        if not self._started:
            return
        async with self._lock:
            if not self._closed:
                await self._reset_locked()

    async def close(self) -> None:
        """Stop the worker and remove its container. Idempotent."""
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()

    # -- warm pool -----------------------------------------------------------------------
    @classmethod
    async def prewarm(cls, config: ContainerConfig, count: int | None = None) -> list[str]:
        """Fill the warm pool of ``config`` and wait until it holds ``count`` containers.

        ``count`` defaults to ``config.warm_pool`` (at least 1). Returns the ids of the
        containers waiting in the pool.

        Raises:
            ConfigError, ExecutorError: The engine or image is not usable.
        """
        target = count if count is not None else max(config.warm_pool, 1)
        spec = await asyncio.to_thread(_prepare_engine_for, config)
        _pool.ensure(spec, target)
        deadline = time.monotonic() + config.startup_timeout * max(target, 1)
        while _pool.count(spec.key) < target:
            failure = _pool.failure(spec.key)
            if failure:
                raise ExecutorError(f"could not fill the warm pool: {failure}")
            if time.monotonic() > deadline:
                raise ExecutorError(
                    f"the warm pool did not reach {target} container(s) within "
                    f"{config.startup_timeout * target:g} s"
                )
            await asyncio.sleep(0.02)
        return _pool.ids(spec.key)

    # -- PackageEnvironment --------------------------------------------------------------
    async def install(self, specs: Sequence[str]) -> str:
        """Install packages inside the container, where the running worker imports them.

        Raises:
            DependencyError: The container has no network, or the installer failed.
        """
        handle = self._require_handle()
        async with self._install_lock:
            missing = await self._missing(handle, list(specs))
            if not missing:
                return f"already installed: {', '.join(specs)}"
            if self.config.network == "none":
                raise DependencyError(
                    f"cannot install {', '.join(missing)}: the container has no network "
                    "(ContainerConfig.network='none'). Bake the packages into the image "
                    "(`py-code-mode image build --dep NAME`, or `RUN uv pip install --system "
                    "...` in your Dockerfile) and list them in the executor's deps, or give "
                    "the container a network (ContainerConfig(network='bridge'))."
                )
            args = {
                "target": _SITE_DIR,
                "specs": missing,
                "timeout": self.config.install_timeout,
                "pip_venv": f"{_PRIVATE}/pip-venv",
            }
            code, output = await self._exec(
                handle, _INSTALL_SCRIPT, args, timeout=self.config.install_timeout + 60
            )
            if code != 0:
                raise DependencyError(
                    f"installing {', '.join(missing)} inside the container failed (exit "
                    f"{code}):\n{output[-3000:]}"
                )
            self._runtime_specs = list(dict.fromkeys([*self._runtime_specs, *missing]))
            return output

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall packages installed at run time; packages of the image stay."""
        handle = self._require_handle()
        async with self._install_lock:
            code, output = await self._exec(
                handle, _UNINSTALL_SCRIPT, {"target": _SITE_DIR, "names": list(names)}, 120
            )
            if code != 0:
                raise DependencyError(f"uninstalling {', '.join(names)} failed:\n{output[-3000:]}")
            try:
                removed = [str(n) for n in json.loads(output.strip().splitlines()[-1])]
            except (ValueError, IndexError):
                removed = []
            from py_code_mode._private.requirements import canonical_name

            gone = {canonical_name(n) for n in removed}
            self._runtime_specs = [
                s for s in self._runtime_specs if canonical_name(_spec_name(s)) not in gone
            ]
            kept = [n for n in names if canonical_name(n) not in gone]
            message = f"removed {', '.join(removed)}" if removed else "nothing was removed"
            if kept:
                message += (
                    f"; {', '.join(kept)}: not installed at run time (part of the image, or "
                    "not installed), so left in place"
                )
            return message

    # -- internals -------------------------------------------------------------------------
    def _require_handle(self) -> _ContainerWorker:
        handle = self._handle
        if handle is None or handle.dead.is_set():
            raise DependencyError("the container is not running; start the session first")
        return handle

    async def _spawn(self) -> _ContainerWorker:
        assert self._spec is not None
        assert self._host is not None
        config = self.config
        spec = self._spec
        launched = await asyncio.to_thread(_pool.take, spec) if config.warm_pool else None
        if config.warm_pool:
            _pool.ensure(spec, config.warm_pool)
        handle: _ContainerWorker | None = None
        try:
            async with asyncio.timeout(config.startup_timeout):
                if launched is None:
                    launched = await asyncio.to_thread(_launch, spec, config.startup_timeout)
                handle, hello = await self._adopt(launched)
                check_hello(hello if hello is not None else await handle.hello)
                await handle.send(
                    {
                        "kind": "configure",
                        "output_limit": config.output_limit,
                        "max_frame": self._max_frame,
                        "limits": {},
                        "site_dirs": [_SITE_DIR],
                        "sys_path": [_WORKDIR],
                    }
                )
                ready = await handle.ready
        except (TimeoutError, WorkerDiedError, ExecutorError, OSError) as exc:
            detail = ""
            if handle is not None:
                await handle.kill("failed to start")
                detail = handle.stderr_tail
            elif launched is not None:
                await asyncio.to_thread(launched.discard)
            reason = (
                f"did not answer within {config.startup_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            raise ExecutorError(
                f"the worker container ({config.image}) could not start: {reason}"
                + (f"\n{detail}" if detail else "")
            ) from None
        for warning in ready.get("warnings") or ():
            logger.info("worker %s: %s", handle.label, warning)
        return handle

    async def _adopt(self, launched: _Launched) -> tuple[_ContainerWorker, dict[str, Any] | None]:
        """Wrap a launched container's streams in a worker connection on this loop."""
        assert self._host is not None
        loop = asyncio.get_running_loop()
        stdio = launched.host_port is None
        attach_reader = asyncio.StreamReader(loop=loop)
        protocol = _AttachProtocol(attach_reader, launched, carries_protocol=stdio)
        launched.attach.setblocking(False)
        transport, _ = await loop.create_connection(lambda: protocol, sock=launched.attach)
        hello = launched.hello
        if stdio:
            reader = attach_reader
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        else:
            try:
                reader, writer, hello = await self._connect_tcp(launched)
            except BaseException:
                transport.close()
                raise
        handle = _ContainerWorker(
            reader,
            writer,
            self._host,
            launched=launched,
            attach=transport,
            protocol=protocol,
            memory_limit=self.config.memory_limit,
            max_frame=self._max_frame,
            output_limit=self.config.output_limit,
        )
        launched.watch.subscribe(loop, handle.on_container_exit)
        return handle, hello

    async def _connect_tcp(
        self, launched: _Launched
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
        """Connect to the published port and authenticate, retrying until it listens."""
        assert launched.host_port is not None
        assert self._spec is not None
        token = self._spec.token
        last = "no answer"
        while True:
            if launched.watch.done:
                raise ExecutorError(
                    f"the container exited before it accepted a connection ({last})"
                )
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", launched.host_port)
            except OSError as exc:
                last = str(exc)
                await asyncio.sleep(0.05)
                continue
            try:
                if token is not None:
                    writer.write(len(token).to_bytes(4, "big") + token)
                    await writer.drain()
                hello = await wire.read_message_async(reader, self._max_frame)
            except (OSError, wire.WireError) as exc:
                hello = None
                last = str(exc)
            if hello is not None and hello.get("kind") == "hello":
                return reader, writer, hello
            writer.close()
            last = "the worker closed the connection (not listening yet, or the token was refused)"
            await asyncio.sleep(0.05)

    async def _restart(self) -> WorkerConnection:
        old = self._handle
        self._handle = None
        if old is not None:
            await old.kill(old.cause or "was replaced")
        self._handle = await self._spawn()
        if self._runtime_specs or self.configured_deps:
            assert self._host is not None
            wanted = [*self.configured_deps, *self._runtime_specs]
            try:
                await self._ensure_deps(list(dict.fromkeys(wanted)), strict=False)
            except DependencyError as exc:
                logger.warning("the replacement container lacks packages: %s", exc)
        return self._handle

    async def _ensure_deps(self, wanted: list[str], *, strict: bool) -> None:
        if not wanted:
            return
        handle = self._require_handle()
        missing = await self._missing(handle, wanted)
        if not missing:
            return
        if self.config.network == "none" and strict:
            raise DependencyError(
                f"the image {self.config.image!r} lacks {', '.join(missing)} and the container "
                "has no network to install them (ContainerConfig.network='none'). Bake them "
                "into the image (`py-code-mode image build --dep NAME`), or set "
                "network='bridge' to install at start."
            )
        logger.info("installing %d missing package(s) in the container", len(missing))
        await self.install(missing)

    async def _missing(self, handle: _ContainerWorker, specs: list[str]) -> list[str]:
        code, output = await self._exec(handle, _LIST_SCRIPT, _SITE_DIR, timeout=120)
        if code != 0:
            raise DependencyError(f"could not list the container's packages:\n{output[-2000:]}")
        try:
            pairs = json.loads(output.strip().splitlines()[-1])
        except (ValueError, IndexError) as exc:
            raise DependencyError(f"unexpected package listing from the container: {exc}") from exc
        return await asyncio.to_thread(_unsatisfied, specs, pairs)

    async def _exec(
        self, handle: _ContainerWorker, script: str, arg: Any, timeout: float
    ) -> tuple[int, str]:
        """Run a Python script in the container as the worker's user; (exit code, output)."""
        argument = arg if isinstance(arg, str) else json.dumps(arg)
        command = [self.config.python, "-s", "-c", script, argument]
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_exec_blocking, handle.container_id, command, self.config.user),
                timeout,
            )
        except TimeoutError:
            raise DependencyError(
                f"a command in the container took longer than {timeout:g} s"
            ) from None


def _prepare_engine_for(config: ContainerConfig) -> _Spec:
    """Reach the engine, clean up strays once, check the image; the container spec."""
    api = _api()
    _oom_events.start()
    if not _reaped.is_set():
        _reaped.set()
        _reap_strays_blocking()
    _check_image(api, config.image)
    return _build_spec(config)


def _exec_blocking(container_id: str, command: list[str], user: str) -> tuple[int, str]:
    errors = _docker_errors()
    api = _api("unbounded")
    try:
        created = api.exec_create(container_id, command, user=user, workdir=_WORKDIR)
        output = api.exec_start(created["Id"])
        code = api.exec_inspect(created["Id"]).get("ExitCode")
    except errors.APIError as exc:
        raise DependencyError(f"could not run a command in the container: {exc}") from exc
    text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)
    return (int(code) if code is not None else -1), text


def _spec_name(spec: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(spec).name


def _unsatisfied(specs: Sequence[str], pairs: Any) -> list[str]:
    """Specs not satisfied by the ``[name, version]`` pairs listed in the container."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed: dict[str, str] = {}
    for pair in pairs if isinstance(pairs, list) else ():
        if isinstance(pair, list) and len(pair) == 2:
            installed.setdefault(canonicalize_name(str(pair[0])), str(pair[1]))
    missing = []
    for spec in specs:
        req = Requirement(spec)
        version = installed.get(canonicalize_name(req.name))
        if version is None or (
            req.specifier and not req.specifier.contains(version, prereleases=True)
        ):
            missing.append(spec)
    return missing
