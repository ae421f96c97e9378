"""Subprocess executor: agent code runs in a child Python process (the default).

The child runs the shared worker runtime (:mod:`py_code_mode.worker`) with the
interpreter of a virtual environment made by ``uv`` and speaks the framed JSON
protocol of :mod:`py_code_mode.worker.wire` over a socket pair. Namespace calls
come back to this process, where tools, storage and credentials live.

Environments. By default the venv is cached under the cache directory, keyed by
the Python version and interpreter and the set of deps (configured plus stored), and
created under a file lock, so concurrent sessions never race and a session whose
deps are cached starts without touching the network. A cached venv is shared by
every session with the same key, so it is never modified after creation:
``deps.add`` at run time installs into a per-session overlay directory that sits
in front of the venv on ``sys.path`` (``uv pip install --target``), and
``deps.remove`` uninstalls from that overlay. Packages of the cached venv itself
stay importable until the session restarts; since ``deps.remove`` drops them from
the stored deps list, the next session gets a venv without them. With
``venv_path`` (your own venv) or ``cache_venv=False`` (a private throw-away venv)
installs and uninstalls go straight into the venv.

Faults. A run past its timeout is interrupted (``KeyboardInterrupt`` in the
worker); if it does not stop within ``interrupt_grace`` seconds the worker's whole
process group is killed and the next run starts a fresh worker. A worker that dies
(``os._exit``, a crash, a kill, the kernel's OOM killer) yields an error result
naming the cause. The worker gets a scrubbed environment, its own working
directory and resource limits; it kills its process group when this process goes
away, so no worker outlives its host.

POSIX only (it relies on ``fcntl``, ``resource`` and process groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from py_code_mode._private.config import check_path, check_positive, collect_deps
from py_code_mode._private.uv import run_uv
from py_code_mode.errors import ConfigError, DependencyError, ExecutorError, SessionClosedError
from py_code_mode.execution._worker_client import (
    WorkerConnection,
    WorkerRunner,
)
from py_code_mode.execution._worker_client import WorkerDiedError as _WorkerDiedError
from py_code_mode.execution._worker_client import check_hello as _check_hello
from py_code_mode.execution._worker_client import closed_result as _closed_result
from py_code_mode.result import ExecutionResult
from py_code_mode.worker import wire

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices

__all__ = ["SubprocessConfig", "SubprocessExecutor"]

logger = logging.getLogger(__name__)

WORKER_PACKAGE = "py_code_mode_worker"
"""Top-level name the worker package is copied under, so it never shadows (or needs)
an installed ``py_code_mode`` in the agent's environment."""

_BOOTSTRAP = (
    "import sys;sys.path.insert(0,sys.argv[1]);"
    f"from {WORKER_PACKAGE}.server import main;"
    "del sys.path[0];sys.exit(main(sys.argv[2:]))"
)
_MIN_PYTHON = (3, 11)
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")
_VENV_MARKER = ".py-code-mode-venv.json"
_ENV_ALLOWLIST = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOCK_TIMEOUT = 1800.0


@dataclass(frozen=True)
class SubprocessConfig:
    """Settings of the subprocess executor.

    Attributes:
        python_version: Interpreter for the worker: ``"3.12"``, ``"3.12.1"`` or a path
            to a ``python3`` executable (>= 3.11); the host's version when omitted.
            Versions are looked up in pyenv, uv-managed Pythons and ``PATH``.
        venv_path: Use (or create) this venv instead of a cached one; deps are
            installed into it when missing.
        cache_venv: Reuse a venv cached by Python version and deps set (the default);
            ``False`` builds a private venv per session, deleted at close.
        cache_dir: Where cached venvs and the worker's code live; defaults to
            ``$PY_CODE_MODE_CACHE_DIR``, else ``$XDG_CACHE_HOME/py-code-mode``, else
            ``~/.cache/py-code-mode``.
        tools_path: Directory of tool YAML files.
        deps: Requirement specs installed in the worker's environment.
        deps_file: A requirements file read at construction (ignored when absent).
        allow_runtime_deps: Let agent code add and remove packages.
        default_timeout: Seconds a run may take when ``run`` gets no timeout; None
            for no limit.
        startup_timeout: Seconds the worker process may take to start and answer
            (venv creation and installs are not included).
        install_timeout: Seconds one ``uv`` venv creation or install may take.
        interrupt_grace: Seconds an interrupted run gets to stop before the worker
            is killed.
        output_limit: Characters of output kept per run; the rest is dropped with a
            marker.
        memory_limit_mb: Address-space limit of the worker and its children (MiB);
            None for no limit. Programs that reserve huge address ranges (browsers,
            some JITs) need it raised.
        max_processes: Processes and threads the worker may add to its user's count
            (``RLIMIT_NPROC``, not enforced for root); None for no limit.
        max_open_files: Open file descriptors per process; None for no limit.
        max_file_size_mb: Largest file the worker may write (MiB); None for no limit.
        env: Extra environment variables for the worker. A string value sets the
            variable; ``None`` copies it from the host when set there. Everything
            else from the host environment is withheld except a short allowlist
            (``PATH``, ``HOME``, ``USER``, ``LOGNAME``, ``LANG``, ``LC_*``, ``TZ``,
            ``TMPDIR``, ``SSL_CERT_FILE``, ``SSL_CERT_DIR``).
        working_dir: The worker's working directory; a private temporary directory,
            removed at close, when omitted.
    """

    python_version: str | None = None
    venv_path: Path | None = None
    cache_venv: bool = True
    cache_dir: Path | None = None
    tools_path: Path | None = None
    deps: tuple[str, ...] = ()
    deps_file: Path | None = None
    allow_runtime_deps: bool = True
    default_timeout: float | None = None
    startup_timeout: float = 30.0
    install_timeout: float = 600.0
    interrupt_grace: float = 0.5
    output_limit: int = 1_000_000
    memory_limit_mb: int | None = 4096
    max_processes: int | None = 256
    max_open_files: int | None = 1024
    max_file_size_mb: int | None = 1024
    env: Mapping[str, str | None] = field(default_factory=dict)
    working_dir: Path | None = None
    _validated_deps: list[str] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("venv_path", "cache_dir", "tools_path", "deps_file", "working_dir"):
            object.__setattr__(self, name, check_path(owner, name, getattr(self, name)))
        _check_python_version(owner, self.python_version)
        for name in ("cache_venv", "allow_runtime_deps"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{owner}.{name} must be True or False")
        check_positive(owner, "default_timeout", self.default_timeout, allow_none=True)
        for name in ("startup_timeout", "install_timeout", "interrupt_grace"):
            check_positive(owner, name, getattr(self, name))
        for name in (
            "output_limit",
            "memory_limit_mb",
            "max_processes",
            "max_open_files",
            "max_file_size_mb",
        ):
            value = getattr(self, name)
            if value is None and name != "output_limit":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                hint = "" if name == "output_limit" else " or None"
                raise ConfigError(f"{owner}.{name} must be a positive integer{hint}, got {value!r}")
        if self.memory_limit_mb is not None and self.memory_limit_mb < 64:
            raise ConfigError(
                f"{owner}.memory_limit_mb must be at least 64 (MiB) for Python to start, "
                f"got {self.memory_limit_mb}"
            )
        if self.max_open_files is not None and self.max_open_files < 32:
            raise ConfigError(
                f"{owner}.max_open_files must be at least 32, got {self.max_open_files}"
            )
        object.__setattr__(self, "env", _check_env(owner, self.env))
        object.__setattr__(self, "_validated_deps", collect_deps(owner, self.deps, self.deps_file))


def _check_python_version(owner: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ConfigError(
            f"{owner}.python_version must be a version such as '3.12' or a path to a python "
            f"executable, got {value!r}"
        )
    text = str(value).strip()
    match = _VERSION_RE.match(text)
    if match is None:
        if os.sep in text or text.startswith("~"):
            return  # a path, checked when the executor starts
        raise ConfigError(
            f"{owner}.python_version must look like '3.12' or '3.12.1' or be a path to a "
            f"python executable, got {value!r}"
        )
    if (int(match[1]), int(match[2])) < _MIN_PYTHON:
        raise ConfigError(
            f"{owner}.python_version {text!r} is too old: the worker needs Python 3.11 or newer"
        )


def _check_env(owner: str, env: Any) -> dict[str, str | None]:
    if not isinstance(env, Mapping):
        raise ConfigError(
            f"{owner}.env must be a mapping of variable names to str (set) or None (copy "
            f"from the host), got {type(env).__name__}"
        )
    checked: dict[str, str | None] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            raise ConfigError(f"{owner}.env: {name!r} is not a valid environment variable name")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ConfigError(
                f"{owner}.env[{name!r}] must be a string without NUL characters or None, "
                f"got {value!r}"
            )
        checked[name] = value
    return checked


# -- interpreters and environments -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Interpreter:
    path: str
    version: tuple[int, int, int]

    @property
    def short(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"


@dataclass(slots=True)
class _Venv:
    path: Path
    python: Path
    site_packages: Path
    shared: bool
    """Cached and shared by key: never modified, runtime installs use the overlay."""


_probe_cache: dict[tuple[str, float], tuple[int, int, int] | None] = {}


def _probe_version(path: str) -> tuple[int, int, int] | None:
    """The version of the interpreter at ``path``, or None when it does not run."""
    try:
        key = (os.path.realpath(path), os.stat(path).st_mtime)
    except OSError:
        return None
    if key in _probe_cache:
        return _probe_cache[key]
    version: tuple[int, int, int] | None = None
    try:
        out = subprocess.run(
            [path, "-c", "import sys;print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PATH": os.environ.get("PATH", os.defpath)},
            check=False,
        )
        parts = out.stdout.strip().split(".")
        if out.returncode == 0 and len(parts) == 3:
            version = (int(parts[0]), int(parts[1]), int(parts[2]))
    except (OSError, subprocess.SubprocessError, ValueError):
        version = None
    _probe_cache[key] = version
    return version


def _candidates(major: int, minor: int) -> list[str]:
    name = f"python{major}.{minor}"
    found: list[str] = []
    roots = [
        Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions",
        Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or Path.home() / ".local/share/uv/python"),
    ]
    for root in roots:
        if root.is_dir():
            for entry in sorted(root.iterdir(), reverse=True):
                candidate = entry / "bin" / name
                if f"{major}.{minor}" in entry.name and candidate.is_file():
                    found.append(str(candidate))
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and "shims" not in d]
    for directory in [*dirs, "/usr/local/bin", "/usr/bin", "/opt/homebrew/bin"]:
        executable = os.path.join(directory, name)
        if os.path.isfile(executable) and os.access(executable, os.X_OK):
            found.append(executable)
    return list(dict.fromkeys(found))


def _resolve_interpreter(spec: str | None) -> _Interpreter:
    """Find the interpreter for ``python_version``.

    Raises:
        ConfigError: Nothing matching runs here, or it is older than 3.11.
    """
    if spec is None:
        base = getattr(sys, "_base_executable", None) or sys.executable
        if not os.path.isfile(base):
            base = sys.executable
        major, minor, micro = sys.version_info[:3]
        return _Interpreter(os.path.realpath(base), (major, minor, micro))
    match = _VERSION_RE.match(spec)
    if match is None:
        path = os.path.realpath(os.path.expanduser(spec))
        version = _probe_version(path)
        if version is None:
            raise ConfigError(f"python_version {spec!r} is not a Python interpreter that runs")
        if version[:2] < _MIN_PYTHON:
            raise ConfigError(
                f"python_version {spec!r} is Python {'.'.join(map(str, version))}; the worker "
                "needs 3.11 or newer"
            )
        return _Interpreter(path, version)
    major, minor = int(match[1]), int(match[2])
    wanted_micro = int(match[3]) if match[3] is not None else None
    best: _Interpreter | None = None
    for candidate in _candidates(major, minor):
        version = _probe_version(candidate)
        if version is None or version[:2] != (major, minor):
            continue
        if wanted_micro is not None and version[2] != wanted_micro:
            continue
        if best is None or version > best.version:
            best = _Interpreter(os.path.realpath(candidate), version)
    if best is None:
        raise ConfigError(
            f"no Python {spec} interpreter was found (looked in pyenv versions, uv-managed "
            f"Pythons and PATH); install it or give python_version as a path to python{major}."
            f"{minor}"
        )
    return best


def _default_cache_dir() -> Path:
    explicit = os.environ.get("PY_CODE_MODE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "py-code-mode"


def _spec_key(spec: str) -> str:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    req = Requirement(spec)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{canonicalize_name(req.name)}{extras}{req.specifier}"


def _venv_key(interpreter: _Interpreter, specs: Sequence[str]) -> str:
    material = json.dumps(
        {
            "python": ".".join(map(str, interpreter.version)),
            "interpreter": interpreter.path,
            "deps": sorted({_spec_key(s) for s in specs}),
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(material.encode()).hexdigest()[:16]
    return f"py{interpreter.version[0]}{interpreter.version[1]}-{digest}"


def _site_packages(venv: Path, interpreter: _Interpreter) -> Path:
    return venv / "lib" / f"python{interpreter.short}" / "site-packages"


def _installed(paths: Sequence[Path]) -> dict[str, str]:
    """Canonical distribution name -> version, for distributions found in ``paths``."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    existing = [str(p) for p in paths if p.is_dir()]
    if not existing:
        return found
    for dist in metadata.distributions(path=existing):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def _missing(specs: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Specs not satisfied by the distributions in ``paths``."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    installed = _installed(paths)
    missing = []
    for spec in specs:
        req = Requirement(spec)
        version = installed.get(canonicalize_name(req.name))
        if version is None or (
            req.specifier and not req.specifier.contains(version, prereleases=True)
        ):
            missing.append(spec)
    return missing


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """An exclusive ``flock`` on ``path``, waited for without blocking the event loop."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ExecutorError(
                        f"timed out waiting for the lock {path}; another process is still "
                        "creating this environment (delete the lock file if none is)"
                    ) from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


_worker_roots: dict[Path, Path] = {}


def _worker_root(cache_dir: Path) -> Path:
    """A directory holding a private copy of the worker package, keyed by its content.

    The worker runs from this copy under the venv's interpreter, where py_code_mode
    itself is not installed; the container executor copies the same files.
    """
    cached = _worker_roots.get(cache_dir)
    if cached is not None and (cached / WORKER_PACKAGE / "server.py").is_file():
        return cached
    source = Path(__file__).resolve().parent.parent / "worker"
    files = sorted(source.glob("*.py"))
    digest = hashlib.sha256()
    contents = {}
    for path in files:
        data = path.read_bytes()
        contents[path.name] = data
        digest.update(path.name.encode() + b"\0" + data + b"\0")
    root = cache_dir / "worker" / digest.hexdigest()[:16]
    if not (root / WORKER_PACKAGE / "server.py").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
        try:
            package = staging / WORKER_PACKAGE
            package.mkdir()
            for name, data in contents.items():
                (package / name).write_bytes(data)
            try:
                os.rename(staging, root)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _worker_roots[cache_dir] = root
    return root


def _popen(argv: list[str], fd: int, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    # Plain Popen rather than asyncio's: its wait() would also wait for pipes that
    # processes forked by agent code can hold open long after the worker died.
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(fd,),
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as a whole
    )


def _needs_venv(path: Path) -> bool:
    """True when ``path`` is missing or empty; ConfigError when it holds something else."""
    if (path / "bin" / "python").exists():
        return False
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(
            f"venv_path {path} exists but is not a virtual environment (no bin/python)"
        )
    return True


# -- one worker process ----------------------------------------------------------------
class _WorkerHandle(WorkerConnection):
    """A worker child process: the shared protocol connection plus the process group."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: HostServices,
        *,
        max_frame: int,
        output_limit: int,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._pidfd = -1
        super().__init__(
            reader,
            writer,
            host,
            label=str(proc.pid),
            max_frame=max_frame,
            output_limit=output_limit,
        )
        self._watch_exit()
        self._watch_stderr()

    def _watch_stderr(self) -> None:
        # The worker's own failures (never agent output) arrive here; keep the tail.
        stream = self.proc.stderr
        if stream is None:
            return
        fd = stream.fileno()
        os.set_blocking(fd, False)

        def readable() -> None:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if chunk:
                self._add_stderr(chunk)
            else:
                self._close_stderr()

        self._loop.add_reader(fd, readable)

    def _close_stderr(self) -> None:
        stream = self.proc.stderr
        if stream is not None and not stream.closed:
            self._loop.remove_reader(stream.fileno())
            stream.close()

    def _watch_exit(self) -> None:
        # Exit is watched on the process itself, not on pipes that forked children
        # may keep open: a pidfd where the kernel has them, else a waiting thread.
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = -1
        if self._pidfd >= 0:
            self._loop.add_reader(self._pidfd, lambda: self._exited(self.proc.wait()))
            return

        def wait() -> None:
            returncode = self.proc.wait()
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(self._exited, returncode)

        threading.Thread(target=wait, name=f"py-code-mode-wait-{self.pid}", daemon=True).start()

    def check_alive(self) -> bool:
        """Notice an exit the event loop has not processed yet; True if still running."""
        if not self.dead.is_set():
            returncode = self.proc.poll()
            if returncode is not None:
                self._exited(returncode)
        return not self.dead.is_set()

    def _exited(self, returncode: int) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        super()._exited(returncode)

    # -- stopping ----------------------------------------------------------------------
    def _terminate(self) -> None:
        # The worker leads its own process group: this ends it, the watchdog and
        # whatever agent code started (unless that left the group on purpose).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _release(self) -> None:
        self._close_stderr()


# -- the executor -----------------------------------------------------------------------
class SubprocessExecutor(WorkerRunner):
    """Runs agent code in a child Python process with its own environment.

    Args:
        config: Settings; defaults when omitted.
    """

    def __init__(self, config: SubprocessConfig | None = None) -> None:
        if config is not None and not isinstance(config, SubprocessConfig):
            raise ConfigError(
                f"SubprocessExecutor expects a SubprocessConfig, got {type(config).__name__}"
            )
        self.config = config or SubprocessConfig()
        self._host: HostServices | None = None
        self._handle: _WorkerHandle | None = None
        self._venv: _Venv | None = None
        self._scratch: Path | None = None
        self._workdir: Path | None = None
        self._overlay: Path | None = None
        self._worker_root: Path | None = None
        self._env: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._install_lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._started = False
        self._closed = False
        self._max_frame = max(wire.DEFAULT_MAX_FRAME, 8 * self.config.output_limit + (1 << 20))

    # -- Executor protocol -----------------------------------------------------------
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
    def worker_pid(self) -> int | None:
        """Process id of the live worker, if any (for diagnostics and tests)."""
        handle = self._handle
        return None if handle is None or handle.dead.is_set() else handle.pid

    @property
    def venv_path(self) -> Path | None:
        """The virtual environment the worker runs in, once started."""
        return None if self._venv is None else self._venv.path

    async def start(self, host: HostServices) -> None:
        """Prepare the environment and start the worker process.

        Raises:
            SessionClosedError: The executor was closed.
            ConfigError: The Python version cannot be found.
            DependencyError: Creating the venv or installing deps failed.
            ExecutorError: The worker did not start.
        """
        if self._closed:
            raise SessionClosedError("this executor was closed; create a new one")
        async with self._lock:
            if self._started or self._closed:
                return
            self._host = host
            try:
                await self._prepare(host)
                self._handle = await self._spawn()
            except BaseException:
                await self._cleanup_files()
                raise
            self._started = True

    async def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Run code in the worker; interrupt it (then kill the worker) past ``timeout``."""
        if not self._started or self._host is None:
            raise SessionClosedError("executor is not started")
        if timeout is None:
            timeout = self.config.default_timeout
        async with self._lock:
            if self._closed:
                return _closed_result()
            return await self._run_locked(code, timeout)

    async def reset(self) -> None:
        """Forget the agent's variables (a fresh worker if the current one is gone)."""
        if not self._started:
            return
        async with self._lock:
            if self._closed:
                return
            await self._reset_locked()

    async def close(self) -> None:
        """Stop the worker (and everything it started) and delete temporary files."""
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.stop()
        await self._cleanup_files()

    # -- PackageEnvironment ----------------------------------------------------------
    async def install(self, specs: Sequence[str]) -> str:
        """Install packages so the running worker can import them.

        Into the session's overlay when the venv is cached and shared, else into the
        venv itself. Specs the environment already satisfies are skipped.
        """
        venv = self._require_venv()
        async with self._install_lock:
            paths = [venv.site_packages]
            if self._overlay is not None:
                paths.insert(0, self._overlay)
            missing = await asyncio.to_thread(_missing, list(specs), paths)
            if not missing:
                return f"already installed: {', '.join(specs)}"
            args = ["pip", "install", "--python", str(venv.python)]
            if venv.shared:
                assert self._overlay is not None
                args += ["--target", str(self._overlay)]
            return await run_uv(
                [*args, *missing], timeout=self.config.install_timeout, what="uv pip install"
            )

    async def uninstall(self, names: Sequence[str]) -> str:
        """Uninstall packages (from the overlay when the venv is shared)."""
        venv = self._require_venv()
        async with self._install_lock:
            if not venv.shared:
                return await run_uv(
                    ["pip", "uninstall", "--python", str(venv.python), *names],
                    timeout=self.config.install_timeout,
                    what="uv pip uninstall",
                )
            assert self._overlay is not None
            from packaging.utils import canonicalize_name

            in_overlay = await asyncio.to_thread(_installed, [self._overlay])
            removable = [n for n in names if canonicalize_name(n) in in_overlay]
            kept = [n for n in names if canonicalize_name(n) not in in_overlay]
            output = ""
            if removable:
                output = await run_uv(
                    [
                        "pip",
                        "uninstall",
                        "--python",
                        str(venv.python),
                        "--target",
                        str(self._overlay),
                        *removable,
                    ],
                    timeout=self.config.install_timeout,
                    what="uv pip uninstall",
                )
            in_venv = await asyncio.to_thread(_installed, [venv.site_packages])
            shared = [n for n in kept if canonicalize_name(n) in in_venv]
            if shared:
                output += (
                    f"\n{', '.join(shared)}: part of the shared cached environment this session "
                    "started with, so it stays importable until the session restarts; sessions "
                    "started after it left the deps list will not have it."
                )
            return output.strip()

    # -- environment -------------------------------------------------------------------
    def _require_venv(self) -> _Venv:
        if self._venv is None:
            raise DependencyError("the executor is not started, so it has no environment yet")
        return self._venv

    async def _prepare(self, host: HostServices) -> None:
        config = self.config
        wanted = list(dict.fromkeys([*self.configured_deps, *await host.storage.list_deps()]))
        spec = None if config.python_version is None else str(config.python_version)
        if spec is None:
            interpreter = _resolve_interpreter(None)
        else:
            interpreter = await asyncio.to_thread(_resolve_interpreter, spec)
        cache_dir = config.cache_dir or _default_cache_dir()
        self._scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="py-code-mode-"))
        self._venv = await self._prepare_venv(interpreter, wanted, cache_dir)
        self._workdir = config.working_dir or self._scratch / "work"
        self._workdir.mkdir(parents=True, exist_ok=True)
        if self._venv.shared:
            self._overlay = self._scratch / "site-packages"
            self._overlay.mkdir()
        root = _worker_roots.get(cache_dir)
        self._worker_root = (
            root if root is not None else await asyncio.to_thread(_worker_root, cache_dir)
        )
        self._env = self._worker_env()

    async def _prepare_venv(
        self, interpreter: _Interpreter, specs: list[str], cache_dir: Path
    ) -> _Venv:
        config = self.config
        if config.venv_path is not None:
            path = config.venv_path.resolve()
            lock = cache_dir / "locks" / (hashlib.sha256(str(path).encode()).hexdigest()[:16])
            async with _file_lock(lock):
                return await self._own_venv(path, interpreter, specs)
        if not config.cache_venv:
            assert self._scratch is not None
            path = self._scratch / "venv"
            await self._create_venv(path, interpreter)
            if specs:
                await self._uv_install(path, specs)
            return _Venv(path, path / "bin" / "python", _site_packages(path, interpreter), False)
        path = cache_dir / "venvs" / _venv_key(interpreter, specs)
        venv = _Venv(path, path / "bin" / "python", _site_packages(path, interpreter), True)
        if (path / _VENV_MARKER).is_file():
            return venv
        async with _file_lock(path.with_name(path.name + ".lock")):
            if (path / _VENV_MARKER).is_file():
                return venv  # another session finished it while we waited
            logger.info("creating a cached environment for %d package(s) at %s", len(specs), path)
            if path.exists():
                await asyncio.to_thread(shutil.rmtree, path)  # left by an interrupted attempt
            await self._create_venv(path, interpreter)
            if specs:
                await self._uv_install(path, specs)
            info = {"python": interpreter.path, "version": ".".join(map(str, interpreter.version))}
            (path / _VENV_MARKER).write_text(json.dumps({**info, "deps": sorted(specs)}))
        return venv

    async def _own_venv(self, path: Path, interpreter: _Interpreter, specs: list[str]) -> _Venv:
        python = path / "bin" / "python"
        if _needs_venv(path):
            await self._create_venv(path, interpreter)
        version = await asyncio.to_thread(_probe_version, str(python))
        if version is None or version[:2] < _MIN_PYTHON:
            raise ConfigError(
                f"venv_path {path}: its python does not run or is older than 3.11 "
                f"(found {version}); the worker needs Python 3.11 or newer"
            )
        own = _Interpreter(str(python), version)
        venv = _Venv(path, python, _site_packages(path, own), False)
        missing = await asyncio.to_thread(_missing, specs, [venv.site_packages]) if specs else []
        if missing:
            await self._uv_install(path, missing)
        return venv

    async def _create_venv(self, path: Path, interpreter: _Interpreter) -> None:
        await run_uv(
            ["venv", "--quiet", "--no-python-downloads", "--python", interpreter.path, str(path)],
            timeout=self.config.install_timeout,
            what=f"uv venv {path}",
        )

    async def _uv_install(self, path: Path, specs: Sequence[str]) -> None:
        await run_uv(
            ["pip", "install", "--python", str(path / "bin" / "python"), *specs],
            timeout=self.config.install_timeout,
            what="uv pip install",
        )

    def _worker_env(self) -> dict[str, str]:
        assert self._venv is not None
        env = {
            name: value
            for name, value in os.environ.items()
            if name in _ENV_ALLOWLIST or name.startswith("LC_")
        }
        for name, value in self.config.env.items():
            if value is not None:
                env[name] = value
            elif name in os.environ:
                env[name] = os.environ[name]
        bins = [str(self._venv.path / "bin")]
        if self._overlay is not None:
            bins.insert(0, str(self._overlay / "bin"))
        env["PATH"] = os.pathsep.join([*bins, env.get("PATH") or os.defpath])
        env["VIRTUAL_ENV"] = str(self._venv.path)
        env.setdefault("PYTHONIOENCODING", "utf-8")
        return env

    async def _cleanup_files(self) -> None:
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    # -- workers -----------------------------------------------------------------------
    async def _spawn(self) -> _WorkerHandle:
        assert self._venv is not None
        assert self._host is not None
        assert self._worker_root is not None
        assert self._workdir is not None
        config = self.config
        host_sock, child_sock = socket.socketpair()
        argv = [
            str(self._venv.python),
            "-P",  # never import from the working directory before the worker is set up
            "-s",
            "-c",
            _BOOTSTRAP,
            str(self._worker_root),
            "--fd",
            str(child_sock.fileno()),
        ]
        try:
            proc = _popen(argv, child_sock.fileno(), self._env, self._workdir)
        except OSError as exc:
            host_sock.close()
            raise ExecutorError(
                f"could not start the worker with {self._venv.python}: {exc}"
            ) from exc
        finally:
            child_sock.close()
        reader, writer = await asyncio.open_unix_connection(sock=host_sock)
        handle = _WorkerHandle(
            proc,
            reader,
            writer,
            self._host,
            max_frame=self._max_frame,
            output_limit=config.output_limit,
        )
        try:
            async with asyncio.timeout(config.startup_timeout):
                _check_hello(await handle.hello)
                await handle.send(
                    {
                        "kind": "configure",
                        "output_limit": config.output_limit,
                        "max_frame": self._max_frame,
                        "limits": {
                            "memory_mb": config.memory_limit_mb,
                            "max_processes": config.max_processes,
                            "max_open_files": config.max_open_files,
                            "max_file_size_mb": config.max_file_size_mb,
                        },
                        "site_dirs": [] if self._overlay is None else [str(self._overlay)],
                        "sys_path": [str(self._workdir)],
                    }
                )
                ready = await handle.ready
        except (TimeoutError, _WorkerDiedError, ExecutorError) as exc:
            await handle.kill("failed to start")
            detail = handle.stderr_tail
            reason = (
                f"did not answer within {config.startup_timeout:g} s"
                if isinstance(exc, TimeoutError)
                else str(exc)
            )
            raise ExecutorError(
                f"the worker process ({self._venv.python}) could not start: {reason}"
                + (f"\n{detail}" if detail else "")
            ) from None
        for warning in ready.get("warnings") or ():
            logger.info("worker %s: %s", handle.pid, warning)
        return handle

    @property
    def _interrupt_grace(self) -> float:
        return self.config.interrupt_grace

    async def _restart(self) -> _WorkerHandle:
        old = self._handle
        self._handle = None
        if old is not None:
            await old.kill(old.cause or "was replaced")
        self._handle = await self._spawn()
        return self._handle
