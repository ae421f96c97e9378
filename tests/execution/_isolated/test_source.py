"""The worker package's cached copy carries the bytecode its interpreter needs.

A jailed worker sees its copy read-only and so can never write bytecode itself; the
host writes it with the copy, for the interpreter the worker runs on.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from py_code_mode.execution._isolated.source import WORKER_PACKAGE, worker_root


def _other_python() -> str | None:
    """An interpreter of another minor version than the host's, if one is installed."""
    pyenv = Path.home() / ".pyenv" / "versions"
    for minor in (12, 13, 11):
        if minor == sys.version_info.minor:
            continue
        candidates = [shutil.which(f"python3.{minor}")]
        candidates += [str(p) for p in sorted(pyenv.glob(f"3.{minor}.*/bin/python3.{minor}"))]
        for found in candidates:
            if found is None:
                continue
            probe = subprocess.run([found, "-c", "pass"], capture_output=True, check=False)
            if probe.returncode == 0:
                return found
    return None


def test_the_copy_holds_bytecode_of_the_host_interpreter(tmp_path: Path) -> None:
    root = worker_root(tmp_path, sys.executable)
    for module in (root / WORKER_PACKAGE).glob("*.py"):
        assert Path(importlib.util.cache_from_source(str(module))).is_file(), module.name


def test_the_copy_holds_bytecode_of_another_interpreter_version(tmp_path: Path) -> None:
    other = _other_python()
    if other is None:
        pytest.skip("no Python of another minor version is installed here")
    root = worker_root(tmp_path, other)
    tag = subprocess.run(
        [other, "-c", "import sys; print(sys.implementation.cache_tag)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (root / WORKER_PACKAGE / "__pycache__" / f"server.{tag}.pyc").is_file()
