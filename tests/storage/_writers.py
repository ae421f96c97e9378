"""Several processes writing to one storage base at once, for the concurrency tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_concurrent_writers(script: str, base: Path, workers: int, count: int) -> None:
    """Run ``script`` in ``workers`` processes on ``base``, released together; wait for all.

    Each process gets ``base``, its worker number, ``count`` and the path of a file
    whose appearance releases it, so the writes really overlap.
    """
    go = base.parent / f"{base.name}.go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(base), str(w), str(count), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    try:
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
