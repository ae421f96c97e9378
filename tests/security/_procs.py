"""Find host processes by a marker in their command line (bounded waits).

Jailed tools and servers run in pid namespaces of their own, so tests find what
they left behind by a unique marker (e.g. ``sleep 4123.456``) in ``/proc/*/cmdline``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path


def marked(marker: str) -> list[int]:
    """Pids of host processes whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


async def appears(marker: str, timeout: float = 15.0) -> list[int]:
    """The marked pids once there is one, or [] after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not marked(marker):
        await asyncio.sleep(0.05)
    return marked(marker)


async def gone(marker: str, timeout: float = 15.0) -> list[int]:
    """The marked pids still there after they ended, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and marked(marker):
        await asyncio.sleep(0.05)
    return marked(marker)
