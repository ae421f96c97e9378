"""The bubblewrap jail shared by the subprocess worker and CLI tool calls.

A :class:`JailSpec` says what a jailed process may see: host paths bound read-only
(or, for a session's own directories, read-write), private size-capped tmpfs mounts,
whether it gets the network, its environment and working directory. :func:`jail_argv`
turns it into a ``bwrap`` command line that also unshares the user, pid, ipc, uts,
net, mount and cgroup namespaces, drops every capability, runs as uid/gid 65534, starts
a new session (no terminal injection), dies with its parent and mounts ``/proc`` of
its own pid namespace and a minimal ``/dev``. Nothing else of the host is visible: no
home directory, no storage base, no docker socket, no ``/proc`` of the host.

:func:`probe` checks once per process that bwrap exists and can create the
namespaces, so callers can refuse to run unjailed with an error that says how to
install it. Per-session memory and process limits come from :mod:`._private.cgroups`
(see :func:`cgroup_prefix`), which are enforced only where the host lets us create
cgroups.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from py_code_mode.errors import ExecutorError

__all__ = [
    "INSTALL_HINT",
    "JailProbe",
    "JailSpec",
    "JailUnavailableError",
    "interpreter_paths",
    "jail_argv",
    "probe",
    "require_jail",
    "system_paths",
]

logger = logging.getLogger(__name__)

SANDBOX_UID = 65534
"""``nobody``: the uid and gid inside every jail."""

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install -y bubblewrap`; Fedora/RHEL: "
    "`dnf install -y bubblewrap`; Arch: `pacman -S bubblewrap`)"
)

# Read-only system directories every jailed program needs (libraries, executables).
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The few files of /etc that programs read at start; never passwd/shadow/ssh/docker.
_ETC_ENTRIES = (
    "/etc/alternatives",
    "/etc/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/os-release",
    "/etc/python3",
    "/etc/python3.11",
    "/etc/gitconfig",
)
_NETWORK_ETC = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf")


class JailUnavailableError(ExecutorError):
    """bubblewrap is missing or cannot create namespaces on this host."""


@dataclass(frozen=True, slots=True)
class JailSpec:
    """What one jailed process sees.

    Attributes:
        read_only: Host paths bound read-only at the same path (missing ones skipped).
        read_write: Host paths bound read-write at the same path (session-owned dirs).
        tmpfs: Mount points of private tmpfs, each capped at ``tmpfs_size`` bytes
            (``/tmp`` is always one).
        tmpfs_size: Size cap of each tmpfs, in bytes.
        network: Share the host's network namespace (else only a private ``lo``).
        env: The complete environment; nothing of the host's is inherited. None
            passes on the environment bwrap itself was started with.
        cwd: Working directory inside the jail.
        hostname: The jail's host name (its own uts namespace).
    """

    read_only: tuple[Path, ...] = ()
    read_write: tuple[Path, ...] = ()
    tmpfs: tuple[Path, ...] = ()
    tmpfs_size: int = 256 << 20
    network: bool = False
    env: Mapping[str, str] | None = field(default_factory=dict)
    cwd: Path = Path("/tmp")  # noqa: S108 - the jail's private tmpfs
    hostname: str = "sandbox"


@dataclass(frozen=True, slots=True)
class JailProbe:
    """Whether bubblewrap works here, and why not when it doesn't."""

    bwrap: str | None
    usable: bool
    detail: str
    version: str = ""


def _bind_args(flag: str, paths: Iterable[Path]) -> list[str]:
    args: list[str] = []
    seen: set[str] = set()
    for path in paths:
        text = str(path)
        if text in seen:
            continue
        seen.add(text)
        if os.path.lexists(text):
            args += [flag, text, text]
    return args


def system_paths(*, network: bool = False) -> tuple[Path, ...]:
    """The read-only system paths a jailed program needs (libraries, certificates)."""
    entries = [*_SYSTEM_DIRS, *_ETC_ENTRIES, *(_NETWORK_ETC if network else ())]
    return tuple(Path(e) for e in entries if os.path.lexists(e))


def interpreter_paths(python: Path) -> tuple[Path, ...]:
    """The installation a Python executable (or a venv's) runs from, to bind read-only.

    For a venv that is its base interpreter's prefix (from ``pyvenv.cfg``), which for
    pyenv or uv-managed Pythons lives under the user's home: only that prefix is bound,
    never the home itself.
    """
    paths: list[Path] = []
    resolved = Path(os.path.realpath(python))
    cfg = python.parent.parent / "pyvenv.cfg"
    homes: list[Path] = [resolved.parent]
    try:
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                homes.append(Path(os.path.realpath(value.strip())))
    except OSError:
        pass
    for home in homes:
        prefix = home.parent if home.name == "bin" else home
        if str(prefix) in ("/", "/usr", "/usr/local"):
            prefix = Path("/usr/local") if str(prefix) == "/usr/local" else Path("/usr")
        paths.append(prefix)
    return tuple(dict.fromkeys(paths))


def jail_argv(bwrap: str, spec: JailSpec, command: Sequence[str]) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` inside ``spec``.

    File descriptors the caller passes (``pass_fds``) stay open in the jail: bwrap
    does not close inherited descriptors.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",  # --unshare-all only tries; the uid change and userns lock need it
        *([] if not spec.network else ["--share-net"]),
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        spec.hostname,
    ]
    if spec.env is not None:
        argv.append("--clearenv")
    if _supports(bwrap, "--disable-userns"):  # no nested user namespaces (bwrap >= 0.8)
        argv.append("--disable-userns")
    for path in system_paths(network=spec.network):
        if path.is_symlink() and str(path) in _SYSTEM_DIRS:  # merged /usr: /bin -> usr/bin
            argv += ["--symlink", os.readlink(path), str(path)]
        else:
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # Private tmpfs first, so session dirs that live under /tmp on the host are bound
    # on top of it rather than hidden by it.
    for mount in dict.fromkeys([Path("/tmp"), Path("/dev/shm"), *spec.tmpfs]):  # noqa: S108 - private tmpfs
        argv += ["--size", str(spec.tmpfs_size), "--perms", "1777", "--tmpfs", str(mount)]
    argv += _bind_args("--ro-bind", spec.read_only)
    argv += _bind_args("--bind", spec.read_write)
    # The jail's own root and /dev: nothing writable but the size-capped tmpfs mounts.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    for name, value in (spec.env or {}).items():
        argv += ["--setenv", name, value]
    argv += ["--chdir", str(spec.cwd), "--", *command]
    return argv


@functools.cache
def _supports(bwrap: str, option: str) -> bool:
    try:
        done = subprocess.run(
            [bwrap, "--help"], check=False, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return option in done.stdout


def _find_bwrap() -> str | None:
    explicit = os.environ.get("PY_CODE_MODE_BWRAP")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("bwrap") or next(
        (p for p in ("/usr/bin/bwrap", "/usr/local/bin/bwrap") if os.access(p, os.X_OK)), None
    )


@functools.cache
def probe() -> JailProbe:
    """Check once per process that bubblewrap runs and can create all namespaces."""
    if not sys.platform.startswith("linux"):
        return JailProbe(None, False, f"bubblewrap needs Linux (this is {sys.platform})")
    bwrap = _find_bwrap()
    if bwrap is None:
        return JailProbe(None, False, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
    true = shutil.which("true") or "/bin/true"
    argv = jail_argv(bwrap, JailSpec(), [true])
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
        version = subprocess.run(
            [bwrap, "--version"], capture_output=True, timeout=10, check=False, text=True
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JailProbe(bwrap, False, f"{bwrap} could not run: {exc}")
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        return JailProbe(
            bwrap,
            False,
            f"{bwrap} cannot create the sandbox namespaces here ({err or done.returncode}); "
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu 24.04), or run "
            "inside a container that permits them",
            version,
        )
    return JailProbe(bwrap, True, f"{version or 'bwrap'} at {bwrap}", version)


def require_jail(what: str, opt_out: str) -> str:
    """The bwrap path, or JailUnavailableError saying how to install it or opt out.

    Args:
        what: What needs the jail, for the message.
        opt_out: How the user runs without one, for the message.
    """
    found = probe()
    if not found.usable or found.bwrap is None:
        raise JailUnavailableError(
            f"{what} runs in a bubblewrap jail, which is not available: {found.detail}. "
            f"To run without isolation (agent code gets your user's access), {opt_out}."
        )
    return found.bwrap


def worker_spec(
    *,
    python: Path,
    read_only: Sequence[Path],
    read_write: Sequence[Path] = (),
    workdir: Path,
    private_workdir: bool,
    env: Mapping[str, str],
    tmpfs_size: int,
    network: bool = False,
) -> JailSpec:
    """The jail of a subprocess worker.

    Args:
        python: The venv's interpreter; its base installation is bound read-only.
        read_only: The venv, the worker's code, the session's package overlay.
        read_write: Directories the user asked to share with agent code.
        workdir: The working directory inside the jail.
        private_workdir: Make ``workdir`` a private size-capped tmpfs.
        env: The worker's complete environment.
        tmpfs_size: Cap of ``/tmp`` and a private working directory, in bytes.
        network: Give the jail the host's network.
    """
    jail_env = dict(env)
    jail_env["HOME"] = str(workdir)
    jail_env["TMPDIR"] = "/tmp"  # noqa: S108 - the jail's private tmpfs
    return JailSpec(
        read_only=(*interpreter_paths(python), *read_only),
        read_write=tuple(read_write),
        tmpfs=(workdir,) if private_workdir else (),
        tmpfs_size=tmpfs_size,
        network=network,
        env=jail_env,
        cwd=workdir,
    )
