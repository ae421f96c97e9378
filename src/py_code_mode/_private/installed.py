"""Which requirement specs a set of installed distributions already satisfies.

The executors learn what is installed in different ways (distribution metadata on
this machine's disk, a listing printed inside a container) and then ask the same
question of it, answered here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["installed_in", "missing_from", "unsatisfied", "versions_from_pairs"]


def installed_in(paths: Sequence[Path]) -> dict[str, str]:
    """Canonical distribution name -> version, for distributions found in ``paths``.

    Blocking (reads metadata from disk); the first distribution of a name wins, as on
    ``sys.path``.
    """
    found: dict[str, str] = {}
    existing = [str(p) for p in paths if p.is_dir()]
    if not existing:
        return found
    for dist in metadata.distributions(path=existing):
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def versions_from_pairs(pairs: Any) -> dict[str, str]:
    """Canonical name -> version from ``[[name, version], ...]`` (malformed items skipped)."""
    installed: dict[str, str] = {}
    items: Iterable[Any] = pairs if isinstance(pairs, list) else ()
    for pair in items:
        if isinstance(pair, list) and len(pair) == 2:
            installed.setdefault(canonicalize_name(str(pair[0])), str(pair[1]))
    return installed


def unsatisfied(specs: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """Specs that no distribution in ``installed`` (canonical name -> version) satisfies."""
    missing = []
    for spec in specs:
        req = Requirement(spec)
        version = installed.get(canonicalize_name(req.name))
        if version is None or (
            req.specifier and not req.specifier.contains(version, prereleases=True)
        ):
            missing.append(spec)
    return missing


def missing_from(specs: Sequence[str], paths: Sequence[Path]) -> list[str]:
    """Specs not satisfied by the distributions in ``paths`` (blocking)."""
    return unsatisfied(specs, installed_in(paths))
