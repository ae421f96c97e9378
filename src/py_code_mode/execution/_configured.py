"""The part of every executor that only reads its config.

Each executor takes one frozen config dataclass; the :class:`Executor` properties
that merely expose config fields, and the refusal of a config of the wrong kind,
are written once here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generic, Protocol, TypeVar

from py_code_mode.errors import ConfigError

__all__ = ["ConfiguredExecutor", "ExecutorConfig"]


class ExecutorConfig(Protocol):
    """The fields every executor config has."""

    @property
    def tools_path(self) -> Path | None:
        """Directory of tool YAML files."""
        ...

    @property
    def allow_runtime_deps(self) -> bool:
        """Whether agent code may add and remove packages."""
        ...

    @property
    def _validated_deps(self) -> list[str]:
        """Specs from ``deps`` and ``deps_file``, validated at construction."""
        ...


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
        return list(self.config._validated_deps)
