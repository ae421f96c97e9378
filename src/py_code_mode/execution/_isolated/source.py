"""The worker package's source files, as shipped to worker processes and containers.

Workers run from a copy of :mod:`py_code_mode.worker` under a top-level name of its
own (:data:`WORKER_PACKAGE`): in the agent's environment ``py_code_mode`` is not
installed, and an installed one must never be shadowed. The subprocess executor
writes the copy to a cache directory (:func:`worker_root`); the container executor
sends the files into the container at start.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import py_compile
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

__all__ = ["WORKER_PACKAGE", "worker_root", "worker_source_files", "worker_sources"]

WORKER_PACKAGE = "py_code_mode_worker"
"""Top-level name the worker package is copied under, so it never shadows (or needs)
an installed ``py_code_mode`` in the agent's environment."""

_SOURCE_DIR = Path(__file__).resolve().parents[2] / "worker"
_sources_lock = threading.Lock()
_sources: dict[str, bytes] = {}
_roots: dict[Path, Path] = {}
_compiled: set[tuple[Path, str]] = set()
_COMPILE_TIMEOUT = 60.0

logger = logging.getLogger(__name__)


def worker_source_files() -> list[Path]:
    """Paths of the worker package's modules, in name order."""
    return sorted(_SOURCE_DIR.glob("*.py"))


def worker_sources() -> dict[str, bytes]:
    """File name -> content of the worker package's modules (read once per process)."""
    with _sources_lock:
        if not _sources:
            for path in worker_source_files():
                _sources[path.name] = path.read_bytes()
        return dict(_sources)


def worker_root(cache_dir: Path, python: str | None = None) -> Path:
    """A directory holding a private copy of the worker package, keyed by its content.

    Blocking. The copy is staged and renamed into place, so processes sharing a
    cache directory never see half of it. With ``python`` (the worker's interpreter)
    the copy also gets that interpreter's bytecode: a jailed worker sees the copy
    read-only, so it could never write its own and would compile the whole package
    at every start (about 10 ms, an eighth of a jailed start).
    """
    root = _copied_root(cache_dir)
    if python is not None and (root, python) not in _compiled:
        _compile(root / WORKER_PACKAGE, python)
        _compiled.add((root, python))
    return root


def _compile(package: Path, python: str) -> None:
    """Write ``python``'s bytecode for ``package`` (the host's own, when it is the same)."""
    try:
        if Path(python).resolve() == Path(sys.executable).resolve() or python == sys.executable:
            for source in sorted(package.glob("*.py")):
                py_compile.compile(str(source), doraise=True)
            return
        # Another interpreter (another version): its own compileall, outside any jail.
        # -I -S: nothing from the environment or its site-packages gets imported.
        subprocess.run(
            [python, "-I", "-S", "-m", "compileall", "-q", str(package)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_COMPILE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, py_compile.PyCompileError) as exc:
        # Only slower starts: the worker compiles the package itself.
        logger.debug("could not precompile the worker package in %s: %s", package, exc)


def _copied_root(cache_dir: Path) -> Path:
    cached = _roots.get(cache_dir)
    if cached is not None and (cached / WORKER_PACKAGE / "server.py").is_file():
        return cached
    contents = worker_sources()
    digest = hashlib.sha256()
    for name, data in contents.items():
        digest.update(name.encode() + b"\0" + data + b"\0")
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
                staging.rename(root)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _roots[cache_dir] = root
    return root
