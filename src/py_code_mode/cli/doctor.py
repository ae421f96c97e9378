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
from pathlib import Path
from typing import Literal

from py_code_mode.search.embeddings import DEFAULT_MODEL, DISABLED_VALUES, MODEL_ENV_VAR

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail"]

PROBE_TIMEOUT = 5.0
OVERALL_TIMEOUT = 20.0


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
    from py_code_mode._private.uv import uv_binary
    from py_code_mode.errors import DependencyError

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
    from py_code_mode.mcp_server.options import (
        EXECUTOR_KINDS,
        default_executor,
        executor_available,
    )

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
            import docker

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


def check_redis(url: str) -> Check:
    """A reachable Redis server at ``url``."""
    if importlib.util.find_spec("redis") is None:
        return Check(
            "redis",
            "fail",
            "the redis package is not installed",
            "pip install 'py-code-mode[redis]'",
        )
    import redis

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


def check_embeddings() -> Check:
    """Whether workflow search can rank by meaning, and with which model."""
    if importlib.util.find_spec("fastembed") is None:
        return Check(
            "embeddings",
            "warn",
            "fastembed is not installed: search ranks by keywords",
            "pip install 'py-code-mode[search]' for search by meaning",
        )
    from importlib import metadata

    version = metadata.version("fastembed")
    configured = os.environ.get(MODEL_ENV_VAR, "").strip()
    if not configured:
        return Check(
            "embeddings",
            "ok",
            f"fastembed {version}; model {DEFAULT_MODEL} (default) is downloaded "
            "at first use; without network, search falls back to keywords",
            f"offline machines: set {MODEL_ENV_VAR} to a local model directory",
        )
    if configured.lower() in DISABLED_VALUES:
        return Check(
            "embeddings",
            "ok",
            f"semantic search is off ({MODEL_ENV_VAR}={configured}): search ranks by keywords",
        )
    path = Path(configured).expanduser()
    if path.is_dir():
        if any(path.glob("*.onnx")):
            return Check("embeddings", "ok", f"fastembed {version}; local model {path}")
        return Check(
            "embeddings",
            "fail",
            f"{MODEL_ENV_VAR}={configured}: the directory holds no .onnx model",
            "point it at a directory with model.onnx and tokenizer.json",
        )
    if os.sep in configured and not path.exists():
        return Check(
            "embeddings",
            "fail",
            f"{MODEL_ENV_VAR}={configured}: no such directory",
            f"fix the path, or give a fastembed model name such as {DEFAULT_MODEL}",
        )
    return Check(
        "embeddings",
        "ok",
        f"fastembed {version}; model {configured} ({MODEL_ENV_VAR}), downloaded at first use",
    )


def check_base(base: Path) -> Check:
    """The library directory: present (or creatable) and writable."""
    if not base.exists():
        return Check("library", "ok", f"{base} does not exist yet; it is created on first use", "")
    if not base.is_dir():
        return Check("library", "fail", f"{base} is not a directory", "pass another --base")
    if not os.access(base, os.W_OK):
        return Check("library", "fail", f"{base} is not writable", "fix its permissions")
    workflows = len(list((base / "workflows").glob("*.py")))
    tools = base / "tools"
    tool_files = len([*tools.glob("*.yaml"), *tools.glob("*.yml")]) if tools.is_dir() else 0
    return Check(
        "library", "ok", f"{base}: {workflows} workflow file(s), {tool_files} tool file(s)"
    )


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


def run_checks(
    base: Path, redis_url: str | None = None, *, deadline: float = OVERALL_TIMEOUT
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
        ("embeddings", check_embeddings),
    ]
    if redis_url is not None:
        probes.append(("redis", lambda: check_redis(redis_url)))
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
