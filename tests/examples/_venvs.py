"""Virtual environments for the framework examples, built by uv and cached.

Each example gets its own venv from its pinned ``requirements.txt`` plus this
checkout (editable, so source changes need no rebuild). A venv is cached under
``$PY_CODE_MODE_TEST_CACHE`` (default ``~/.cache/py-code-mode/example-venvs``) keyed by
the requirements, the interpreter, the checkout's path and its dependency list, so
reruns skip the install. Builds are serialized with a file lock and marked complete
only at the end, so an interrupted build is redone rather than used.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
_READY = ".ready"
_BUILD_TIMEOUT = 600


@dataclass
class ExampleVenv:
    """A built environment and what building it cost."""

    path: Path
    build_seconds: float
    cached: bool

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.path / "bin" / "python"

    @property
    def bin(self) -> Path:
        """Its scripts directory (console scripts such as ``agentproc``)."""
        return self.path / "bin"


def cache_root() -> Path:
    """Where example venvs are kept between runs."""
    configured = os.environ.get("PY_CODE_MODE_TEST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "py-code-mode" / "example-venvs"


def python312() -> Path | None:
    """A Python 3.12 interpreter: ``$PY312``, pyenv's, or ``python3.12`` on PATH."""
    configured = os.environ.get("PY312")
    if configured and Path(configured).is_file():
        return Path(configured)
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    found = sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12"))
    if found:
        return Path(found[-1])
    on_path = shutil.which("python3.12")
    return Path(on_path) if on_path else None


def uv_binary() -> str:
    """The uv executable (the ``uv`` package is a dependency of py-code-mode)."""
    from uv import find_uv_bin

    return find_uv_bin()


def _key(requirements: str, python: Path, *, editable: bool) -> str:
    digest = hashlib.sha256()
    digest.update(requirements.encode())
    digest.update(str(python.resolve()).encode())
    digest.update(str(REPO).encode())
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    # Only the dependency list matters for an editable install of the checkout.
    digest.update(pyproject.split("[project.scripts]")[0].encode())
    if not editable:  # a copy of the checkout: any source change needs a rebuild
        for path in sorted((REPO / "src").rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _index_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def example_venv(name: str, python: Path | None) -> ExampleVenv:
    """The venv of ``examples/<name>``: its requirements plus this checkout (editable)."""
    requirements = (EXAMPLES / name / "requirements.txt").read_text(encoding="utf-8")
    return build_venv(name, python, requirements, editable=True)


def build_venv(
    label: str, python: Path | None, requirements: str, *, editable: bool
) -> ExampleVenv:
    """A cached venv with ``requirements`` and this checkout; skips the test when impossible.

    Args:
        label: Names the venv (and the test's skip reason).
        python: The interpreter to build it on; None skips with the reason.
        requirements: Requirement lines, as in a requirements file.
        editable: Install the checkout editable (examples) or as users do (a copy).
    """
    if python is None:
        pytest.skip(
            f"{label} needs Python 3.12: none found (set PY312, or install one with "
            "pyenv: pyenv install 3.12)"
        )
    target = cache_root() / f"{label}-{_key(requirements, python, editable=editable)}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _READY).exists():
            return ExampleVenv(target, 0.0, cached=True)
        if not _index_reachable():
            pytest.skip(f"{label} needs packages from PyPI, which is not reachable")
        shutil.rmtree(target, ignore_errors=True)
        started = time.monotonic()
        uv = uv_binary()
        env = {**os.environ, "VIRTUAL_ENV": str(target)}
        env.pop("UV_PYTHON", None)
        subprocess.run(
            [uv, "venv", "--quiet", "--python", str(python), str(target)],
            check=True,
            timeout=_BUILD_TIMEOUT,
            env=env,
        )
        req_file = target / "requirements.in"
        req_file.write_text(requirements, encoding="utf-8")
        checkout = ["-e", str(REPO)] if editable else [str(REPO)]
        result = subprocess.run(
            [uv, "pip", "install", "--quiet", "-r", str(req_file), *checkout],
            check=False,
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT,
            env=env,
        )
        if result.returncode != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise AssertionError(f"building the {label} venv failed:\n{result.stderr}")
        (target / _READY).write_text(f"{time.time()}\n")
        return ExampleVenv(target, time.monotonic() - started, cached=False)
