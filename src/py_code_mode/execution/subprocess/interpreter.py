"""Finding the Python interpreter a worker process runs under.

``SubprocessConfig.python_version`` names a version (``"3.12"``, ``"3.12.1"``) or an
interpreter's path; versions are looked up in pyenv, uv-managed Pythons and
``PATH``, and every candidate is asked for its real version.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from py_code_mode.errors import ConfigError

__all__ = [
    "MIN_PYTHON",
    "Interpreter",
    "check_python_version",
    "probe_version",
    "resolve_interpreter",
]

MIN_PYTHON = (3, 11)
"""The oldest Python the worker runs on."""

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True, slots=True)
class Interpreter:
    """A Python interpreter that runs, with its version."""

    path: str
    version: tuple[int, int, int]

    @property
    def short(self) -> str:
        """``major.minor``, as in ``lib/python3.12``."""
        return f"{self.version[0]}.{self.version[1]}"


def check_python_version(value: Any) -> None:
    """Refuse a ``python_version`` setting that can never work (config time, no I/O).

    Raises:
        ValueError: Not a version or path, or a version older than 3.11 (the
            config reports it as a :class:`ConfigError` naming the field).
    """
    if value is None:
        return
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(
            f"must be a version such as '3.12' or a path to a python executable, got {value!r}"
        )
    text = str(value).strip()
    match = _VERSION_RE.match(text)
    if match is None:
        if os.sep in text or text.startswith("~"):
            return  # a path, checked when the executor starts
        raise ValueError(
            f"must look like '3.12' or '3.12.1' or be a path to a python executable, got {value!r}"
        )
    if (int(match[1]), int(match[2])) < MIN_PYTHON:
        raise ValueError(f"{text!r} is too old: the worker needs Python 3.11 or newer")


_probe_cache: dict[tuple[str, float], tuple[int, int, int] | None] = {}


def probe_version(path: str) -> tuple[int, int, int] | None:
    """The version of the interpreter at ``path``, or None when it does not run (blocking)."""
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


def resolve_interpreter(spec: str | None) -> Interpreter:
    """The interpreter for a ``python_version`` setting; the host's for None (blocking).

    Raises:
        ConfigError: Nothing matching runs here, or it is older than 3.11.
    """
    if spec is None:
        base = getattr(sys, "_base_executable", None) or sys.executable
        if not os.path.isfile(base):
            base = sys.executable
        major, minor, micro = sys.version_info[:3]
        return Interpreter(os.path.realpath(base), (major, minor, micro))
    match = _VERSION_RE.match(spec)
    if match is None:
        path = os.path.realpath(os.path.expanduser(spec))
        version = probe_version(path)
        if version is None:
            raise ConfigError(f"python_version {spec!r} is not a Python interpreter that runs")
        if version[:2] < MIN_PYTHON:
            raise ConfigError(
                f"python_version {spec!r} is Python {'.'.join(map(str, version))}; the worker "
                "needs 3.11 or newer"
            )
        return Interpreter(path, version)
    major, minor = int(match[1]), int(match[2])
    wanted_micro = int(match[3]) if match[3] is not None else None
    best: Interpreter | None = None
    for candidate in _candidates(major, minor):
        version = probe_version(candidate)
        if version is None or version[:2] != (major, minor):
            continue
        if wanted_micro is not None and version[2] != wanted_micro:
            continue
        if best is None or version > best.version:
            best = Interpreter(os.path.realpath(candidate), version)
    if best is None:
        raise ConfigError(
            f"no Python {spec} interpreter was found (looked in pyenv versions, uv-managed "
            f"Pythons and PATH); install it or give python_version as a path to python{major}."
            f"{minor}"
        )
    return best
