"""Validation helpers shared by the executor configs.

The configs are frozen dataclasses that check (and normalise) their fields in
``__post_init__``; :class:`FieldCheck` does that for the kinds of field they have in
common, so every config words the same mistake the same way: ``Owner.field must ...``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from py_code_mode._private.requirements import read_requirements_file, validate_requirement
from py_code_mode.errors import ConfigError, DependencyError

__all__ = [
    "FieldCheck",
    "check_env",
    "check_integer",
    "check_path",
    "check_positive",
    "collect_deps",
    "parse_size",
    "resolve_env",
]

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


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


def check_integer(
    owner: str, field: str, value: Any, *, minimum: int = 1, allow_none: bool = False
) -> None:
    """Raise ConfigError unless ``value`` is an int of at least ``minimum`` (or None if allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        hint = " or None" if allow_none else ""
        raise ConfigError(f"{owner}.{field} must be {bound}{hint}, got {value!r}")


def check_path(owner: str, field: str, value: Any) -> Path | None:
    """Coerce a str/PathLike to Path; raise ConfigError for anything else."""
    if value is None:
        return None
    if isinstance(value, str | Path):
        return Path(value).expanduser()
    raise ConfigError(f"{owner}.{field} must be a path (str or pathlib.Path), got {value!r}")


def check_env(owner: str, field: str, env: Any) -> dict[str, str | None]:
    """A copy of an environment setting: names to a value (set) or None (copy from the host).

    Raises:
        ConfigError: Not a mapping, a bad variable name, or a value that is not a
            string without NUL characters.
    """
    if not isinstance(env, Mapping):
        raise ConfigError(
            f"{owner}.{field} must be a mapping of variable names to str (set) or None (copy "
            f"from the host), got {type(env).__name__}"
        )
    checked: dict[str, str | None] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME_RE.match(name):
            raise ConfigError(f"{owner}.{field}: {name!r} is not a valid environment variable name")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise ConfigError(
                f"{owner}.{field}[{name!r}] must be a string without NUL characters or None, "
                f"got {value!r}"
            )
        checked[name] = value
    return checked


def resolve_env(wanted: Mapping[str, str | None]) -> dict[str, str]:
    """The variables a checked environment setting sets; None copies the host's value if any."""
    resolved: dict[str, str] = {}
    for name, value in wanted.items():
        if value is not None:
            resolved[name] = value
        elif name in os.environ:
            resolved[name] = os.environ[name]
    return resolved


def parse_size(owner: str, field: str, value: Any, *, minimum: int) -> int:
    """Bytes from a size such as ``"512m"``, ``"2g"`` or an int.

    Raises:
        ConfigError: Not a size, or smaller than ``minimum`` bytes.
    """
    if isinstance(value, bool):
        size = -1
    elif isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.match(value)):
        size = int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    else:
        raise ConfigError(
            f"{owner}.{field} must be a size such as '512m' or '2g' (or bytes), got {value!r}"
        )
    if size < minimum:
        raise ConfigError(f"{owner}.{field} must be at least {minimum >> 20} MiB, got {value!r}")
    return size


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


class FieldCheck:
    """Checks the fields of one frozen config dataclass from its ``__post_init__``.

    Normalising checks (paths, environments, deps) store the normalised value back on
    the frozen instance.

    Args:
        config: The config being constructed; its class name prefixes every error.
    """

    def __init__(self, config: object) -> None:
        self.config = config
        self.owner = type(config).__name__

    def _get(self, name: str) -> Any:
        return getattr(self.config, name)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self.config, name, value)

    def common(self) -> None:
        """The fields every executor config has (all but ``deps``, see :meth:`deps`)."""
        self.paths("tools_path", "deps_file")
        self.flags("allow_runtime_deps")
        self.numbers("default_timeout", allow_none=True)
        self.numbers("interrupt_grace")

    def paths(self, *names: str) -> None:
        """Path fields: coerced to ``Path`` (``~`` expanded); None stays None."""
        for name in names:
            self._set(name, check_path(self.owner, name, self._get(name)))

    def flags(self, *names: str) -> None:
        """Fields that must be exactly True or False."""
        for name in names:
            if not isinstance(self._get(name), bool):
                raise ConfigError(f"{self.owner}.{name} must be True or False")

    def numbers(self, *names: str, allow_none: bool = False) -> None:
        """Positive finite numbers (seconds, CPUs)."""
        for name in names:
            check_positive(self.owner, name, self._get(name), allow_none=allow_none)

    def integers(self, *names: str, minimum: int = 1, allow_none: bool = False) -> None:
        """Whole numbers of at least ``minimum`` (counts, sizes, ports)."""
        for name in names:
            check_integer(self.owner, name, self._get(name), minimum=minimum, allow_none=allow_none)

    def env(self, name: str) -> None:
        """An environment setting (see :func:`check_env`), stored as a plain dict."""
        self._set(name, check_env(self.owner, name, self._get(name)))

    def deps(self) -> None:
        """Validate ``deps`` and ``deps_file`` into the config's ``_validated_deps``."""
        self._set(
            "_validated_deps", collect_deps(self.owner, self._get("deps"), self._get("deps_file"))
        )
