"""``py-code-mode doctor``: what this machine can run, and how to fix what it cannot.

Every probe has its own timeout and runs on a daemon thread with an overall
deadline, so an unreachable Docker socket or Redis host can never hang the command.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from py_code_mode._private.uv import uv_binary
from py_code_mode.errors import DependencyError
from py_code_mode.mcp_server.options import EXECUTOR_KINDS, default_executor, executor_available
from py_code_mode.search.embeddings import DEFAULT_MODEL, DISABLED_VALUES, MODEL_ENV_VAR

if TYPE_CHECKING:
    from py_code_mode.quotas import Quotas

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail"]

PROBE_TIMEOUT = 5.0
OVERALL_TIMEOUT = 20.0
EMBEDDING_LOAD_TIMEOUT = 15.0


@dataclass(frozen=True)
class Check:
    """The outcome of one probe.

    Attributes:
        name: What was checked.
        status: ``"ok"``, ``"warn"`` (optional feature unavailable) or ``"fail"``.
        detail: What was found.
        fix: How to fix it, when it is not ok.
    """

    name: str
    status: Status
    detail: str
    fix: str = ""


def _run(argv: list[str], timeout: float = PROBE_TIMEOUT) -> str:
    """stdout+stderr of a command; raises OSError/TimeoutExpired/CalledProcessError."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return (done.stdout or done.stderr).strip()


def check_python() -> Check:
    """The host interpreter, which the in-process and subprocess executors use."""
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", "ok", f"{version} at {sys.executable}")


def check_other_pythons() -> Check:
    """Other interpreters on PATH (for building environments of other versions)."""
    found: dict[str, str] = {}
    for name in ("python3.11", "python3.12", "python3.13", "python3.14"):
        path = shutil.which(name)
        if path is None:
            continue
        try:
            found[name] = _run([path, "-c", "import sys; print(sys.version.split()[0])"])
        except (OSError, subprocess.SubprocessError):
            continue
    if not found:
        return Check(
            "python versions",
            "warn",
            "no python3.11+ interpreters on PATH besides this one",
            "optional: install other versions (e.g. pyenv, or `uv python install 3.12`)",
        )
    return Check("python versions", "ok", ", ".join(f"{v} ({n})" for n, v in found.items()))


def check_uv() -> Check:
    """The ``uv`` binary, which makes the subprocess executor's envs and installs deps."""
    try:
        path = uv_binary()
        version = _run([path, "--version"])
    except (DependencyError, OSError, subprocess.SubprocessError) as exc:
        return Check(
            "uv",
            "fail",
            f"not usable: {exc}",
            "install it with `pip install uv`; the subprocess executor and deps need it",
        )
    return Check("uv", "ok", f"{version} ({path})")


def check_executors() -> Check:
    """Which executors this installation contains."""
    have = [k for k in EXECUTOR_KINDS if executor_available(k)]
    detail = f"{', '.join(have)} (default: {default_executor()})"
    if "subprocess" not in have:
        return Check(
            "executors",
            "warn",
            detail,
            "the subprocess executor is missing: upgrade py-code-mode; code runs in-process",
        )
    return Check("executors", "ok", detail)


def check_docker() -> Check:
    """A reachable Docker engine, needed only by the container executor."""
    fix = (
        "only needed for --executor container: install Docker and start the engine "
        "(`sudo systemctl start docker`, or `dockerd &`), and make sure this user may "
        "use /var/run/docker.sock (or set DOCKER_HOST)"
    )
    if importlib.util.find_spec("docker") is not None:
        try:
            import docker  # the optional `container` extra

            client = docker.from_env(timeout=int(PROBE_TIMEOUT))
            try:
                engine = client.version().get("Version", "?")
            finally:
                client.close()
            return Check("docker", "ok", f"engine {engine} reachable")
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            return Check("docker", "warn", f"engine not reachable: {_one_line(exc)}", fix)
    cli = shutil.which("docker")
    if cli is None:
        return Check(
            "docker",
            "warn",
            "neither the docker SDK nor the docker CLI is installed",
            f"{fix}; then `pip install 'py-code-mode[container]'`",
        )
    try:
        version = _run([cli, "version", "--format", "{{.Server.Version}}"])
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("docker", "warn", f"engine not reachable: {_one_line(exc)}", fix)
    return Check(
        "docker",
        "warn",
        f"engine {version} reachable, but the docker SDK is not installed",
        "pip install 'py-code-mode[container]'",
    )


def check_jail() -> Check:
    """The bubblewrap jail of the subprocess executor, CLI tool calls and stdio MCP servers."""
    from py_code_mode._private import jail
    from py_code_mode._private.tool_jail import tool_jail_status

    found = jail.probe()
    if found.usable:
        tools_jailed, why = tool_jail_status()
        jailed = "subprocess workers, CLI tool calls and stdio MCP servers run jailed"
        if not tools_jailed:
            jailed = "subprocess workers run jailed"
        detail = (
            f"{found.detail}: {jailed} (own user/pid/net/mount namespaces, uid 65534, "
            "read-only system, private /tmp, no network)"
        )
        if tools_jailed:
            return Check("sandbox", "ok", detail)
        return Check(
            "sandbox",
            "warn",
            f"{detail}; CLI tools and stdio MCP servers run UNJAILED ({why})",
            "unset PY_CODE_MODE_TOOL_JAIL to jail them",
        )
    return Check(
        "sandbox",
        "fail" if sys.platform.startswith("linux") else "warn",
        f"no bubblewrap jail: {found.detail}. The subprocess executor refuses to start; "
        "CLI tools and stdio MCP servers run unjailed",
        f"{jail.INSTALL_HINT}; or opt out explicitly with --isolation none",
    )


def check_limits() -> Check:
    """Which per-session limits the host enforces for jailed workers."""
    from py_code_mode._private import cgroups

    found = cgroups.support()
    if found.version:
        return Check(
            "session limits",
            "ok",
            f"memory and processes capped per session ({found.detail}); open files and file "
            "size per process (rlimits); disk by the jail's size-capped tmpfs",
        )
    return Check(
        "session limits",
        "warn",
        f"memory and processes are limited per process only (rlimits), not per session: "
        f"{found.detail}; disk is capped by the jail's tmpfs",
        "run as root or under a systemd scope with cgroup delegation (Delegate=yes)",
    )


def check_gvisor() -> Check:
    """The runsc runtime of gVisor, registered with Docker (ContainerConfig(runtime="runsc"))."""
    fix = (
        "optional: apt-get install runsc; add it to /etc/docker/daemon.json as "
        '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": '
        '["--platform=ptrace", "--network=none", "--host-uds=open"]}}} and reload dockerd '
        "(SIGHUP)"
    )
    if importlib.util.find_spec("docker") is None:
        return Check("gvisor", "warn", "the docker SDK is not installed", fix)
    try:
        import docker

        client = docker.from_env(timeout=int(PROBE_TIMEOUT))
        try:
            runtimes = client.info().get("Runtimes") or {}
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check("gvisor", "warn", f"engine not reachable: {_one_line(exc)}", fix)
    if "runsc" in runtimes:
        args = (runtimes["runsc"] or {}).get("runtimeArgs") or []
        if not any(a in ("--host-uds=open", "--host-uds=all") for a in args):
            return Check(
                "gvisor",
                "warn",
                "runsc is registered without --host-uds=open: network='allowlist' containers "
                "cannot reach their egress proxy under it (the others work)",
                fix,
            )
        return Check("gvisor", "ok", "runsc is registered: --executor container --runtime runsc")
    return Check("gvisor", "warn", "runsc is not registered with the Docker engine", fix)


def check_redis(url: str) -> Check:
    """A reachable Redis server at ``url``."""
    if importlib.util.find_spec("redis") is None:
        return Check(
            "redis",
            "fail",
            "the redis package is not installed",
            "pip install 'py-code-mode[redis]'",
        )
    import redis  # the optional `redis` extra, like the module below

    from py_code_mode.storage.redis import mask_url

    shown = mask_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=PROBE_TIMEOUT, socket_timeout=PROBE_TIMEOUT
        )
        try:
            client.ping()
            version = client.info("server").get("redis_version", "?")
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check(
            "redis",
            "fail",
            f"{shown}: {_one_line(exc)}",
            "start Redis (e.g. `redis-server --port 6379 --daemonize yes`) or fix the URL, "
            "password and TLS (rediss://) settings",
        )
    return Check("redis", "ok", f"{shown}: Redis {version}")


def check_embeddings(load_timeout: float = EMBEDDING_LOAD_TIMEOUT) -> Check:
    """Load the embedding model search uses, so "ok" means search ranks by meaning."""
    if importlib.util.find_spec("fastembed") is None:
        return Check(
            "embeddings",
            "warn",
            "fastembed is not installed: search ranks by keywords",
            "reinstall py-code-mode (fastembed is one of its dependencies)",
        )
    from py_code_mode.search.embeddings import Embedder

    version = metadata.version("fastembed")
    configured = os.environ.get(MODEL_ENV_VAR, "").strip()
    local_hint = (
        f"set {MODEL_ENV_VAR} to a local model directory (model.onnx + tokenizer.json), "
        f"or allow downloads of {DEFAULT_MODEL} from Hugging Face"
    )
    if configured.lower() in DISABLED_VALUES and configured:
        return Check(
            "embeddings",
            "ok",
            f"semantic search is off ({MODEL_ENV_VAR}={configured}): search ranks by keywords",
        )
    status = Embedder(configured or None).load(timeout=load_timeout)
    shown = configured or f"{DEFAULT_MODEL} (default)"
    if status.state == "ready":
        return Check("embeddings", "ok", f"fastembed {version}; model {shown} loaded")
    if status.state == "failed":
        reason = status.reason or "the model could not be loaded"
        return Check(
            "embeddings",
            "warn",
            f"model {shown} cannot be loaded ({reason}): search ranks by keywords",
            status.hint or local_hint if configured else local_hint,
        )
    return Check(
        "embeddings",
        "warn",
        f"model {shown} was still loading after {load_timeout:g} s",
        local_hint,
    )


def check_container(image: str | None = None) -> Check:
    """The container executor's image in the engine, and the engine's runtimes."""
    from py_code_mode.execution.container import DEFAULT_IMAGE

    wanted = image or os.environ.get("PY_CODE_MODE_IMAGE") or DEFAULT_IMAGE
    if importlib.util.find_spec("docker") is None:
        return Check("container", "warn", "the docker package is not installed", "reinstall")
    import docker

    try:
        client = docker.from_env(timeout=int(PROBE_TIMEOUT))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check("container", "warn", f"no engine to check the image: {_one_line(exc)}")
    try:
        runtimes = sorted((client.info().get("Runtimes") or {}).keys())
        try:
            found = client.images.get(wanted)
        except docker.errors.ImageNotFound:
            return Check(
                "container",
                "warn",
                f"image {wanted} is not in the engine (runtimes: {', '.join(runtimes)})",
                "build it with `py-code-mode image build` (behind a TLS-intercepting proxy add "
                "--ca-bundle), or pass --image / set PY_CODE_MODE_IMAGE to an image with python3",
            )
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check("container", "warn", f"cannot inspect the engine: {_one_line(exc)}")
    finally:
        client.close()
    gvisor = "runsc (gVisor) available" if "runsc" in runtimes else "no runsc (gVisor) runtime"
    return Check(
        "container",
        "ok",
        f"image {wanted} ({str(found.id)[:19]}); runtimes: {', '.join(runtimes)}; {gvisor}",
    )


def check_base(base: Path) -> Check:
    """The library directory: present (or creatable) and writable."""
    if not base.exists():
        return Check("library", "ok", f"{base} does not exist yet; it is created on first use", "")
    if not base.is_dir():
        return Check("library", "fail", f"{base} is not a directory", "pass another --base")
    if not os.access(base, os.W_OK):
        return Check("library", "fail", f"{base} is not writable", "fix its permissions")
    from py_code_mode.tools.registry import load_tool_directory

    workflows = len(list((base / "workflows").glob("*.py")))
    try:
        tools, problems = load_tool_directory(base / "tools")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return Check("library", "fail", f"{base}/tools: {_one_line(exc)}", "fix the folder")
    detail = f"{base}: {workflows} workflow file(s), {len(tools)} tool(s) loaded"
    if problems:
        shown = "; ".join(str(p) for p in problems[:5])
        return Check(
            "library",
            "fail",
            f"{detail}; {len(problems)} tool file(s) failed to load: {shown}",
            "fix or remove those files (agents see them as missing tools)",
        )
    return Check("library", "ok", detail)


def check_http_access() -> Check:
    """How ``py-code-mode-mcp --transport http`` would authenticate, from the environment."""
    from py_code_mode.errors import ConfigError
    from py_code_mode.mcp_server.options import parse_args
    from py_code_mode.mcp_server.tenants import TOKEN_ENV, TOKENS_FILE_ENV

    options = parse_args(["--transport", "http"])
    try:
        tenancy = options.tenancy()
    except ConfigError as exc:
        return Check(
            "http access",
            "warn",
            f"HTTP would refuse to start: {exc}",
            f"set ${TOKENS_FILE_ENV} to a token file or ${TOKEN_ENV} to a token, "
            "or serve a loopback host with --no-auth",
        )
    from py_code_mode.mcp_server.access import describe_access

    return Check("http access", "ok", describe_access(options, tenancy))


def check_tools(base: Path) -> Check:
    """The library's tool files: any that fail to load, and any marked unsafe."""
    from py_code_mode.tools.registry import load_tool_directory

    folder = base / "tools"
    if not folder.is_dir():
        return Check("tools", "ok", f"{folder}: no tool files")
    tools, problems = load_tool_directory(folder)
    unsafe = [f"{t.name} ({why})" for t in tools if (why := getattr(t, "unsafe", None))]
    detail = f"{len(tools)} tool(s) loaded from {folder}"
    if unsafe:
        return Check(
            "tools",
            "warn",
            f"{detail}; UNSAFE for untrusted code: {'; '.join(unsafe)}",
            "declare the options the tool needs instead of unsafe_passthrough",
        )
    if problems:
        return Check(
            "tools",
            "warn",
            f"{detail}; not loaded: {'; '.join(str(p) for p in problems)[:600]}",
            "fix the named fields of those files",
        )
    return Check("tools", "ok", detail)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def check_quotas(quotas: Quotas) -> Check:
    """The quotas in force, so an operator sees what agents may store."""
    shown = ", ".join(f"{name}={_size(value, name)}" for name, value, _ in quotas.describe())
    return Check(
        "quotas", "ok", shown, "change one with --quota NAME=VALUE, e.g. max_artifacts=500"
    )


def _size(value: int, name: str) -> str:
    if name.endswith("_bytes"):
        for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if value % factor == 0:
                return f"{value // factor}{unit}"
    return str(value)


def run_checks(
    base: Path,
    redis_url: str | None = None,
    *,
    deadline: float = OVERALL_TIMEOUT,
    image: str | None = None,
    quotas: Quotas | None = None,
) -> list[Check]:
    """Run every probe concurrently; a probe still running at ``deadline`` fails.

    Returns:
        One :class:`Check` per probe, in a stable order.
    """
    probes: list[tuple[str, Callable[[], Check]]] = [
        ("python", check_python),
        ("python versions", check_other_pythons),
        ("uv", check_uv),
        ("executors", check_executors),
        ("library", lambda: check_base(base)),
        ("tools", lambda: check_tools(base)),
        ("docker", check_docker),
        ("sandbox", check_jail),
        ("session limits", check_limits),
        ("gvisor", check_gvisor),
        ("container", lambda: check_container(image)),
        ("embeddings", check_embeddings),
        ("http access", check_http_access),
    ]
    if redis_url is not None:
        probes.append(("redis", lambda: check_redis(redis_url)))
    if quotas is not None:
        probes.append(("quotas", lambda: check_quotas(quotas)))
    results: dict[str, Check] = {}

    def work(name: str, probe: Callable[[], Check]) -> None:
        try:
            results[name] = probe()
        except Exception as exc:  # noqa: BLE001 - a broken probe is reported, not raised
            results[name] = Check(name, "fail", f"check crashed: {_one_line(exc)}")

    threads = [
        threading.Thread(target=work, args=probe, name=f"doctor-{probe[0]}", daemon=True)
        for probe in probes
    ]
    for thread in threads:
        thread.start()
    end = time.monotonic() + deadline
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    return [
        results.get(name)
        or Check(name, "fail", f"no answer within {deadline:g} s", "check the service")
        for name, _ in probes
    ]
