"""What every executor config shares, and the part of every executor that only reads it.

Configs are frozen pydantic models. The field types below carry the rules (positive
seconds, counts, sizes, paths, environments, requirement specs), so each executor's
``config.py`` only declares its fields. pydantic's errors are translated at
construction into one :class:`ConfigError` with one line per mistake, each naming
the field: ``SubprocessConfig.timeout: Input should be greater than 0, got -1``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    model_validator,
)

from py_code_mode._private.requirements import read_requirements_file, validate_requirement
from py_code_mode.errors import ConfigError, DependencyError

__all__ = [
    "ConfiguredExecutor",
    "Count",
    "EnvSetting",
    "ExecutorConfig",
    "Flag",
    "MemoryLimit",
    "OptionalPath",
    "Seconds",
    "SizeInput",
    "at_least_mib",
    "resolve_env",
]

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
"""A positive, finite number of seconds (ints accepted, bools and strings not)."""

Count = Annotated[int, Field(ge=1, strict=True)]
"""A whole number of at least 1."""

Flag = StrictBool
"""Exactly True or False (not ``"yes"`` or 1)."""


def _expand_user(path: Path | None) -> Path | None:
    return None if path is None else path.expanduser()


OptionalPath = Annotated[Path | None, AfterValidator(_expand_user)]
"""A path (str or Path, ``~`` expanded) or None."""


def _env_name(name: str) -> str:
    if not _ENV_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid environment variable name")
    return name


def _env_value(value: str | None) -> str | None:
    if value is not None and "\0" in value:
        raise ValueError("a value must not contain NUL characters")
    return value


EnvSetting = dict[
    Annotated[str, AfterValidator(_env_name)],
    Annotated[str | None, AfterValidator(_env_value)],
]
"""Variables for the worker: a string sets one, None copies the host's value if set."""


def _parse_size(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match = _SIZE_RE.match(value)
    if match is None:
        raise ValueError("must be a size such as '512m' or '2g' (or bytes)")
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


SizeInput = BeforeValidator(_parse_size)
"""Reads a Docker-style size (``"512m"``, ``"2g"``: binary units) or an int as bytes."""


def at_least_mib(minimum: int) -> AfterValidator:
    """Refuses a size below ``minimum`` MiB."""

    def check(size: int) -> int:
        if size < minimum << 20:
            raise ValueError(f"must be at least {minimum} MiB")
        return size

    return AfterValidator(check)


MemoryLimit = Annotated[int, SizeInput, Field(strict=True), at_least_mib(64)]
"""Memory of an isolated worker in bytes; Python needs at least 64 MiB to start."""


def _requirement(spec: str) -> str:
    try:
        return validate_requirement(spec)
    except DependencyError as exc:  # not a ValueError: pydantic would not collect it
        raise ValueError(str(exc)) from exc


Requirement = Annotated[str, AfterValidator(_requirement)]


def resolve_env(wanted: EnvSetting) -> dict[str, str]:
    """The variables an environment setting sets; None copies the host's value if any."""
    resolved: dict[str, str] = {}
    for name, value in wanted.items():
        if value is not None:
            resolved[name] = value
        elif name in os.environ:
            resolved[name] = os.environ[name]
    return resolved


_PLAINER = {
    "extra_forbidden": "no such setting",
    "path_type": "Input should be a path (str or pathlib.Path)",
    "tuple_type": "Input should be a list of strings",
}


def _describe(owner: str, exc: ValidationError) -> str:
    """One line per mistake: ``Owner.field: what is wrong, got value``."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        parts = [part for part in loc if part != "[key]"]
        location = "".join([f".{part}" for part in parts[:1]] + [f"[{p!r}]" for p in parts[1:]])
        message = _PLAINER.get(error["type"], str(error["msg"]).removeprefix("Value error, "))
        shown = repr(error.get("input"))
        if loc and error["type"] != "extra_forbidden" and shown not in message:
            message = f"{message}, got {shown}"
        lines.append(f"{owner}{location}: {message}")
    return "\n".join(lines)


class ExecutorConfig(BaseModel):
    """The settings every executor has.

    Attributes:
        tools_path: Directory of tool YAML files.
        deps: Requirement specs the session needs.
        deps_file: A requirements file read at construction (ignored when absent).
        allow_runtime_deps: Let agent code add and remove packages.
        timeout: Seconds a run may take when ``run`` gets no timeout; None for no
            limit. (``default_timeout`` is accepted as a deprecated alias.)
        interrupt_grace: Seconds an interrupted run gets to stop before the worker
            is killed and replaced.
        output_limit: Characters of output kept per run; the rest is dropped with a
            marker.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    _renamed: ClassVar[dict[str, str]] = {"default_timeout": "timeout"}
    """Old setting names still accepted (with a DeprecationWarning): old -> new."""

    tools_path: OptionalPath = None
    deps: tuple[Requirement, ...] = ()
    deps_file: OptionalPath = None
    allow_runtime_deps: Flag = True
    timeout: Seconds | None = None
    interrupt_grace: Seconds = 0.5
    output_limit: Count = 1_000_000
    _validated_deps: list[str] = PrivateAttr(default_factory=list)

    def __init__(self, **settings: Any) -> None:
        owner = type(self).__name__
        for old, new in self._renamed.items():
            if old not in settings:
                continue
            if new in settings:
                raise ConfigError(f"{owner}: {old} is the old name of {new}; give only {new}")
            warnings.warn(
                f"{owner}({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=2
            )
            settings[new] = self._convert_renamed(old, settings.pop(old))
        try:
            super().__init__(**settings)
        except ValidationError as exc:
            raise ConfigError(_describe(owner, exc)) from exc

    @classmethod
    def _convert_renamed(cls, old: str, value: Any) -> Any:
        """The value of a deprecated setting in the unit of its new name."""
        return value

    @model_validator(mode="after")
    def _read_deps(self) -> ExecutorConfig:
        specs = list(self.deps)
        if self.deps_file is not None and self.deps_file.exists():
            try:
                specs.extend(read_requirements_file(self.deps_file))
            except DependencyError as exc:
                raise ValueError(f"deps_file: {exc}") from exc
        self._validated_deps = list(dict.fromkeys(specs))
        return self

    @property
    def validated_deps(self) -> list[str]:
        """Specs from ``deps`` and ``deps_file``, validated at construction."""
        return list(self._validated_deps)


ConfigT = TypeVar("ConfigT", bound=ExecutorConfig)


class ConfiguredExecutor(Generic[ConfigT]):
    """Holds an executor's config and answers the config-backed protocol properties.

    Args:
        config: The caller's config, or None for the defaults.
        config_type: The config class this executor takes.

    Raises:
        ConfigError: ``config`` is not a ``config_type``.
    """

    def __init__(self, config: ConfigT | None, config_type: type[ConfigT]) -> None:
        if config is not None and not isinstance(config, config_type):
            wanted = config_type.__name__
            article = "an" if wanted[:1] in "AEIOU" else "a"
            raise ConfigError(
                f"{type(self).__name__} expects {article} {wanted}, got {type(config).__name__}"
            )
        self.config: ConfigT = config if config is not None else config_type()

    @property
    def tools_path(self) -> Path | None:
        """Directory of tool YAML files."""
        return self.config.tools_path

    @property
    def allow_runtime_deps(self) -> bool:
        """Whether agent code may add and remove packages."""
        return self.config.allow_runtime_deps

    @property
    def configured_deps(self) -> list[str]:
        """Specs from ``deps`` and ``deps_file``."""
        return self.config.validated_deps
