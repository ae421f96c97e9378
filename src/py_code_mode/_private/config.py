"""Validation helpers shared by the executor configs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from py_code_mode._private.requirements import read_requirements_file, validate_requirement
from py_code_mode.errors import ConfigError, DependencyError

__all__ = ["check_path", "check_positive", "collect_deps"]


def check_positive(owner: str, field: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise ConfigError unless ``value`` is a positive finite number (or None if allowed)."""
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        hint = " or None" if allow_none else ""
        raise ConfigError(f"{owner}.{field} must be a positive number{hint}, got {value!r}")


def check_path(owner: str, field: str, value: Any) -> Path | None:
    """Coerce a str/PathLike to Path; raise ConfigError for anything else."""
    if value is None:
        return None
    if isinstance(value, str | Path):
        return Path(value).expanduser()
    raise ConfigError(f"{owner}.{field} must be a path (str or pathlib.Path), got {value!r}")


def collect_deps(owner: str, deps: Any, deps_file: Path | None) -> list[str]:
    """Validated specs from a config's ``deps`` plus ``deps_file`` (when it exists)."""
    if isinstance(deps, str) or not isinstance(deps, list | tuple):
        raise ConfigError(f"{owner}.deps must be a list of requirement strings, got {deps!r}")
    try:
        specs = [validate_requirement(d) for d in deps]
        if deps_file is not None and deps_file.exists():
            specs.extend(read_requirements_file(deps_file))
    except DependencyError as exc:
        raise ConfigError(f"{owner}: {exc}") from exc
    return list(dict.fromkeys(specs))
