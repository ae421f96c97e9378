"""Pydantic models of the tool YAML files, and the rules that tie their parts together.

Imported only when tool files are loaded: pydantic takes a while to import and
``import py_code_mode`` must stay fast. Models forbid unknown keys so that a typo
(``descripton:``) is reported instead of silently ignored, and are strict (a
quoted ``"60"`` is not a number, ``1`` is not ``true``). The parts every kind of
tool file shares (:class:`StrictModel`, :class:`ToolFileConfig`, ``ToolName``,
``Seconds``, ``EntryMap``) live here too, so the HTTP and MCP models obey the
same rules.

A CLI tool file::

    name: curl
    description: Transfer data from or to URLs
    command: curl            # executable on PATH, or a path (relative: to this file)
    args: []                 # fixed argv items after the command
    timeout: 60              # seconds
    success_exit_codes: [0]  # e.g. [0, 1] for grep, where 1 means "no match"
    env: {TOKEN: "${TOKEN}"} # the whole environment besides PATH and locale
    paths: ["."]             # directories `path: true` arguments may name
    network: true            # through the host's egress proxy: public addresses only
    allow_addresses: []      # non-public ranges still allowed
    separator: "--"          # before the positionals; null when the program has none
    option_values: attached  # --flag=value / -Fvalue; `next`: flag, then value
    schema:
      options:
        max-time: {type: number, description: ...}  # called as max_time, flag --max-time
        silent: {type: boolean, short: s}           # flag -s
        request: {type: string, flag: -X}           # explicit flag wins over short
      positional:
        - {name: url, type: string, required: true}
        - {name: files, type: array, path: true}   # inside `paths`
        # `passthrough: true` (options for the program) needs `unsafe_passthrough: true`
    recipes:
      get:
        description: ...
        preset: {silent: true}
        params:
          url: {}                    # no default and not preset: required
          max_time: {default: 30}    # type and description come from the schema
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from py_code_mode._private.names import is_keyword
from py_code_mode.tools._egress import parse_networks
from py_code_mode.tools._expand import Redactor, expand_value
from py_code_mode.tools.cli import (
    DEFAULT_OUTPUT_LIMIT,
    ArgType,
    CliArgument,
    CliRecipe,
    CliTool,
    CliToolSpec,
    describe_type_error,
)
from py_code_mode.tools.protocol import ParameterSpec

__all__ = [
    "RESERVED_TOOL_NAMES",
    "CliOptionConfig",
    "CliPositionalConfig",
    "CliRecipeConfig",
    "CliRecipeParamConfig",
    "CliSchemaConfig",
    "CliToolConfig",
    "EntryMap",
    "HostPathList",
    "JailedToolConfig",
    "Seconds",
    "StrictModel",
    "ToolFileConfig",
    "ToolName",
    "describe_validation_error",
    "load_cli_tool",
    "resolve_host_paths",
    "validate_tool_name",
]

RESERVED_TOOL_NAMES = frozenset({"list", "search", "names"})
"""Methods of the ``tools`` namespace; a tool of that name would be unreachable."""

_TOOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_OPTION_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
_SHORT = re.compile(r"^[A-Za-z0-9]$")
_FLAG = re.compile(r"^--?[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_VALUE_ERROR_PREFIX = "Value error, "
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
    return value


_M = TypeVar("_M")


def validate_tool_name(name: str) -> str:
    """Return ``name`` if agents can reach it as ``tools.<name>``, else raise ValueError."""
    if not _TOOL_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid tool name: use letters, digits and underscores, "
            "starting with a letter (e.g. 'curl', 'my_api')"
        )
    if is_keyword(name):
        raise ValueError(f"{name!r} is a Python keyword, so tools.{name} would not parse")
    if name in RESERVED_TOOL_NAMES:
        raise ValueError(
            f"{name!r} clashes with the method tools.{name}(); "
            f"reserved: {', '.join(sorted(RESERVED_TOOL_NAMES))}"
        )
    return name


def _python_name_problem(name: str) -> str | None:
    if not name.isidentifier() or not name.isascii():
        return "is not a Python identifier"
    if is_keyword(name):
        return "is a Python keyword"
    if name.startswith("_"):
        return "starts with an underscore"
    return None


def _none_entries_as_empty(value: Any) -> Any:
    # `url:` with nothing after it parses as None; it means "no settings".
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


# -- parts shared by the models of every kind of tool file (cli, http, mcp) --------

ToolName = Annotated[str, AfterValidator(validate_tool_name)]
"""A tool name agents can reach as ``tools.<name>``."""

Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A timeout: positive and finite."""

RegexPattern = Annotated[str | None, AfterValidator(_check_regex)]
"""A ``pattern`` setting: must compile as a Python regular expression."""


def _check_networks(value: list[str]) -> list[str]:
    parse_networks(value)
    return value


AddressList = Annotated[list[str], AfterValidator(_check_networks)]
"""``allow_addresses``: addresses or ranges that may be reached besides public ones."""

EntryMap = Annotated[dict[str, _M], BeforeValidator(_none_entries_as_empty)]
"""Named sections (``recipes.<r>.params``, ``endpoints``) where an entry left empty
in YAML (``url:``) stands for one with every setting at its default."""


class StrictModel(BaseModel):
    """Base of the tool file models: typos are errors and nothing is coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


def _check_host_paths(value: list[str]) -> list[str]:
    for index, item in enumerate(value):
        if "\x00" in item:
            raise ValueError(f"item {index} contains a NUL character")
    return value


HostPathList = Annotated[list[str], AfterValidator(_check_host_paths)]
"""Host paths a jailed tool sees (``~`` and ``${VAR}`` expand; see :func:`resolve_host_paths`)."""


def resolve_host_paths(
    items: Sequence[str], *, field: str, environ: Mapping[str, str]
) -> tuple[str, ...]:
    """Expand ``${VAR}`` and ``~`` in declared paths and resolve them (links followed).

    Relative paths are taken from the host's working directory at load time, for
    every kind of tool file. The jail binds the results as given.

    Raises:
        ConfigError: A referenced variable is not set or malformed.
    """
    return tuple(
        os.path.realpath(
            os.path.expanduser(expand_value(p, field=f"{field}[{i}]", environ=environ))
        )
        for i, p in enumerate(items)
    )


class JailedToolConfig(StrictModel):
    """The jail keys shared by tool files whose program runs on the host (CLI, stdio MCP)."""

    paths: HostPathList = Field(default_factory=list)
    """Host paths the tool may read (bound read-only); its jail shows no other host file."""
    network: bool = False
    """Whether the tool gets the network (public addresses only, unless allowed below)."""
    allow_addresses: AddressList = Field(default_factory=list)


class ToolFileConfig(StrictModel):
    """What every tool file starts with, whatever its ``type``."""

    name: ToolName
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    """Words search matches besides the description (upstream py-code-mode files have them)."""
    confirm: bool = False
    """Every call asks the session's approver first (see ``Session(approve=...)``)."""


# -- CLI tool files ----------------------------------------------------------------


class CliOptionConfig(StrictModel):
    """``schema.options.<key>``: a flag of the program."""

    type: ArgType = "string"
    short: str | None = None
    flag: str | None = None
    description: str = ""
    pattern: RegexPattern = None
    choices: list[str] | None = None
    path: bool = False
    cwd: bool = False

    @field_validator("short")
    @classmethod
    def _check_short(cls, value: str | None) -> str | None:
        if value is not None and not _SHORT.match(value):
            raise ValueError(
                f"short must be a single letter or digit without the dash (e.g. 's' for -s), "
                f"got {value!r}; use `flag` for anything else"
            )
        return value

    @field_validator("flag")
    @classmethod
    def _check_flag(cls, value: str | None) -> str | None:
        if value is not None and not _FLAG.match(value):
            raise ValueError(
                f"flag must be written as on the command line, e.g. '-X' or '--max-time', "
                f"got {value!r}"
            )
        return value


class CliPositionalConfig(StrictModel):
    """An item of ``schema.positional``: an argument after the options."""

    name: str
    type: Literal["string", "integer", "number", "array"] = "string"
    required: bool = False
    passthrough: bool = False
    description: str = ""
    pattern: RegexPattern = None
    choices: list[str] | None = None
    path: bool = False
    subcommand: bool = False
    separator: str | None = None

    @field_validator("separator")
    @classmethod
    def _check_separator(cls, value: str | None) -> str | None:
        if value is not None and not _FLAG.match(value) and value != "--":
            raise ValueError(f"separator must be a flag such as '--', got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_subcommand(self) -> Self:
        if self.subcommand and (self.type != "string" or not self.choices):
            raise ValueError(
                f"{self.name}: a `subcommand: true` positional needs type string and a "
                "`choices` list (it goes before the options, so only known words may)"
            )
        return self


class CliSchemaConfig(StrictModel):
    """``schema``: what the tool accepts when called directly."""

    options: dict[str, CliOptionConfig] = Field(default_factory=dict)
    positional: list[CliPositionalConfig] = Field(default_factory=list)


class CliRecipeParamConfig(StrictModel):
    """``recipes.<recipe>.params.<name>``: an argument the recipe's caller may pass.

    ``type`` and ``description`` default to the schema's. A param is required
    unless it has a ``default``, the recipe presets it, or ``required: false``.
    """

    type: ArgType | None = None
    description: str | None = None
    default: Any = None
    required: bool | None = None


class CliRecipeConfig(StrictModel):
    """``recipes.<name>``: a preset way to call the tool."""

    description: str = ""
    confirm: bool = False
    """Calls of this recipe ask the session's approver first."""
    preset: dict[str, Any] = Field(default_factory=dict)
    params: EntryMap[CliRecipeParamConfig] = Field(default_factory=dict)


class CliToolConfig(ToolFileConfig, JailedToolConfig):
    """A ``type: cli`` tool file."""

    type: Literal["cli"] = "cli"
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    timeout: Seconds = 60.0
    success_exit_codes: list[int] = Field(default_factory=lambda: [0], min_length=1)
    schema_: CliSchemaConfig = Field(default_factory=CliSchemaConfig, alias="schema")
    recipes: dict[str, CliRecipeConfig] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    """Variables the program gets (``${VAR}`` expanded from the host); nothing else of
    the host's environment reaches it besides a minimal PATH and locale."""
    separator: str | None = "--"
    option_values: Literal["attached", "next"] = "attached"
    unsafe_passthrough: bool = False

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not _ENV_NAME.match(key):
                raise ValueError(f"env: {key!r} is not a valid variable name")
            if "\x00" in item:
                raise ValueError(f"env.{key}: the value contains a NUL character")
        return value

    @field_validator("separator")
    @classmethod
    def _check_separator(cls, value: str | None) -> str | None:
        if value is not None and not _FLAG.match(value) and value != "--":
            raise ValueError(
                f"separator must be the end-of-options marker the program honours ('--', "
                f"'--end-of-options') or null, got {value!r}"
            )
        return value

    @field_validator("command")
    @classmethod
    def _check_command(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("command contains a NUL character")
        if value != value.strip():
            raise ValueError(f"command {value!r} has leading or trailing whitespace")
        if any(c.isspace() for c in value) and "/" not in value:
            raise ValueError(
                f"command {value!r} contains spaces: give only the executable here and put "
                "fixed arguments in `args`, e.g. command: git, args: [--no-pager]"
            )
        return value

    @field_validator("args")
    @classmethod
    def _check_args(cls, value: list[str]) -> list[str]:
        for index, item in enumerate(value):
            if "\x00" in item:
                raise ValueError(f"item {index} contains a NUL character")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        self._resolve()
        return self

    def to_spec(
        self, *, source: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> CliToolSpec:
        """Resolve names, flags and recipe parameters into a :class:`CliToolSpec`.

        Args:
            source: The YAML file; a relative ``command`` path (one with a ``/``)
                is taken relative to its folder, so tools can ship scripts.
            environ: Where ``${VAR}`` in ``env`` and ``paths`` comes from (the host's
                environment by default).

        Raises:
            ConfigError: A referenced variable is not set or malformed.
        """
        environ = os.environ if environ is None else environ
        redactor = Redactor()
        env = {
            key: expand_value(value, field=f"env.{key}", environ=environ, redactor=redactor)
            for key, value in self.env.items()
        }
        paths = resolve_host_paths(self.paths, field="paths", environ=environ)
        arguments, recipes = self._resolve()
        command = self.command
        if source is not None and "/" in command and not Path(command).is_absolute():
            command = str(source.parent / command)
        return CliToolSpec(
            name=self.name,
            command=command,
            description=self.description.strip(),
            args=tuple(self.args),
            timeout=self.timeout,
            arguments=arguments,
            recipes=recipes,
            success_exit_codes=frozenset(self.success_exit_codes),
            source=str(source) if source is not None else None,
            env=env,
            paths=paths,
            network=self.network,
            allow_addresses=parse_networks(self.allow_addresses),
            separator=self.separator,
            option_values=self.option_values,
            unsafe_passthrough=self.unsafe_passthrough,
            redactor=redactor,
        )

    def _resolve(self) -> tuple[tuple[CliArgument, ...], tuple[CliRecipe, ...]]:
        """Cross-check the schema and recipes; raise ValueError listing every problem."""
        problems: list[str] = []
        arguments: dict[str, CliArgument] = {}
        aliases: dict[str, str] = {}  # YAML key or Python name -> Python name

        for key, option in self.schema_.options.items():
            where = f"schema.options.{key}"
            if not _OPTION_KEY.match(key):
                problems.append(
                    f"{where}: option keys use letters, digits, '-' and '_', starting with a "
                    "letter (spell unusual flags with `flag:`)"
                )
                continue
            py_name = key.replace("-", "_")
            if (why := _python_name_problem(py_name)) is not None:
                problems.append(
                    f"{where}: callers would pass it as {py_name!r}, which {why}; "
                    f"rename the key and keep the flag with `flag: --{key}`"
                )
                continue
            if py_name in arguments:
                problems.append(f"{where}: clashes with another option called {py_name!r}")
                continue
            flag = option.flag or (f"-{option.short}" if option.short else f"--{key}")
            self._check_constraints(where, option, problems)
            if option.cwd and option.type != "string":
                problems.append(f"{where}: `cwd: true` needs type string")
            arguments[py_name] = CliArgument(
                name=py_name,
                type=option.type,
                kind="option",
                flag=flag,
                description=option.description.strip(),
                pattern=option.pattern,
                choices=tuple(option.choices) if option.choices is not None else None,
                path=option.path or option.cwd,
                cwd=option.cwd,
            )
            aliases[key] = aliases[py_name] = py_name

        for index, positional in enumerate(self.schema_.positional):
            where = f"schema.positional[{index}].name"
            if (why := _python_name_problem(positional.name)) is not None:
                problems.append(f"{where}: {positional.name!r} {why}")
                continue
            if positional.name in arguments:
                problems.append(
                    f"{where}: {positional.name!r} is already the name of an option or positional"
                )
                continue
            self._check_constraints(f"schema.positional[{index}]", positional, problems)
            if positional.passthrough and not self.unsafe_passthrough:
                problems.append(
                    f"schema.positional[{index}]: `passthrough: true` hands agent code any "
                    "option of the program (--output=..., --exec=...); declare the options "
                    "the tool needs instead, or mark the tool `unsafe_passthrough: true` "
                    "(it is then reported as unsafe)"
                )
            arguments[positional.name] = CliArgument(
                name=positional.name,
                type=positional.type,
                kind="positional",
                required=positional.required,
                passthrough=positional.passthrough,
                description=positional.description.strip(),
                pattern=positional.pattern,
                choices=tuple(positional.choices) if positional.choices is not None else None,
                path=positional.path,
                subcommand=positional.subcommand,
                separator=positional.separator,
            )
            aliases[positional.name] = positional.name

        recipes = [
            recipe
            for name, config in self.recipes.items()
            if (recipe := self._resolve_recipe(name, config, arguments, aliases, problems))
        ]
        if problems:
            raise ValueError("; ".join(problems))
        ordered = sorted(arguments.values(), key=lambda a: a.kind != "option")
        return tuple(ordered), tuple(recipes)

    def _check_constraints(
        self, where: str, config: CliOptionConfig | CliPositionalConfig, problems: list[str]
    ) -> None:
        uses_paths = config.path or (isinstance(config, CliOptionConfig) and config.cwd)
        if uses_paths and not self.paths:
            problems.append(
                f"{where}: a path argument needs the directories it may name, in the "
                "tool-level `paths:` list"
            )
        if uses_paths and config.type not in ("string", "array"):
            problems.append(f"{where}: `path: true` needs type string or array")
        if (config.pattern or config.choices) and config.type == "boolean":
            problems.append(f"{where}: `pattern`/`choices` do not apply to a boolean")

    @staticmethod
    def _resolve_recipe(
        name: str,
        config: CliRecipeConfig,
        arguments: dict[str, CliArgument],
        aliases: dict[str, str],
        problems: list[str],
    ) -> CliRecipe | None:
        where = f"recipes.{name}"
        count = len(problems)
        if (why := _python_name_problem(name)) is not None:
            problems.append(f"{where}: recipe name {name!r} {why}")
        known = ", ".join(arguments) or "none (the schema declares no arguments)"

        preset: dict[str, Any] = {}
        for key, value in config.preset.items():
            target = aliases.get(key)
            if target is None:
                problems.append(
                    f"{where}.preset.{key}: not an option or positional; known: {known}"
                )
            elif target in preset:
                problems.append(f"{where}.preset.{key}: {target!r} is preset twice")
            elif (why := describe_type_error(arguments[target].type, value)) is not None:
                problems.append(f"{where}.preset.{key}: {why}")
            else:
                preset[target] = value

        parameters: list[ParameterSpec] = []
        seen: set[str] = set()
        for key, param in config.params.items():
            at = f"{where}.params.{key}"
            target = aliases.get(key)
            if target is None:
                problems.append(f"{at}: not an option or positional; known: {known}")
                continue
            if target in seen:
                problems.append(f"{at}: {target!r} is a param twice")
                continue
            seen.add(target)
            argument = arguments[target]
            if param.type is not None and param.type != argument.type:
                problems.append(
                    f"{at}.type: the schema declares {target!r} as {argument.type}, "
                    f"not {param.type}"
                )
                continue
            has_default = "default" in param.model_fields_set and param.default is not None
            if has_default and (why := describe_type_error(argument.type, param.default)):
                problems.append(f"{at}.default: {why}")
                continue
            if param.required and has_default:
                problems.append(f"{at}: `required: true` contradicts the default")
                continue
            default = param.default if has_default else preset.get(target)
            required = param.required if param.required is not None else default is None
            parameters.append(
                ParameterSpec(
                    name=target,
                    type=argument.type,
                    description=(
                        param.description.strip()
                        if param.description is not None
                        else argument.description
                    ),
                    required=required,
                    default=default,
                )
            )

        by_name = {p.name: p for p in parameters}
        for argument in arguments.values():
            if not argument.required or preset.get(argument.name) is not None:
                continue
            param_spec = by_name.get(argument.name)
            if param_spec is None or not (param_spec.required or param_spec.default is not None):
                problems.append(
                    f"{where}: required positional {argument.name!r} must be preset or be a "
                    "required param (or have a default)"
                )
        if len(problems) > count:
            return None
        return CliRecipe(
            name=name,
            description=config.description.strip(),
            preset=preset,
            parameters=tuple(parameters),
        )


def _format_location(location: Sequence[int | str]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            text += " (key)"
        else:
            text += f".{part}" if text else str(part)
    return text


def describe_validation_error(exc: ValidationError, *, limit: int = 10) -> str:
    """Render a pydantic error as ``field.path: message`` items joined by ``; ``.

    Loader validators raise ``ValueError`` whose text already starts with the
    field path of a nested item; pydantic's ``Value error, `` prefix is dropped.
    """
    parts: list[str] = []
    errors = exc.errors(include_url=False)
    for error in errors[:limit]:
        message = str(error["msg"]).removeprefix(_VALUE_ERROR_PREFIX)
        if error["type"] == "model_type":  # don't name our classes: "... or instance of X"
            message = "Input should be a mapping of fields"
        location = _format_location(error["loc"])
        parts.append(f"{location}: {message}" if location else message)
    if len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more problem(s)")
    return "; ".join(parts)


def load_cli_tool(
    data: Mapping[str, Any],
    source: Path | str | None = None,
    *,
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> CliTool:
    """Validate a parsed YAML mapping and build the CLI tool (the loader of ``type: cli``).

    Args:
        data: The YAML document (``name``, ``command``, ``schema``, ...).
        source: The file it came from: named in messages, and the base for a
            relative ``command`` path such as ``./bin/tool``.
        output_limit: Bytes kept of each of stdout and stderr.

    Raises:
        pydantic.ValidationError: The mapping does not describe a valid CLI tool.
    """
    config = CliToolConfig.model_validate(data)
    path = Path(source) if source is not None else None
    return CliTool(config.to_spec(source=path), output_limit=output_limit)
