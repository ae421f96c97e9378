"""CLI tools: a command line program declared in YAML, called like a Python function.

``tools.curl(url=..., silent=True)`` and ``tools.curl.get(url=...)`` both end up
here. Keyword arguments are checked against the declared schema, turned into an
argv list and run with :func:`asyncio.create_subprocess_exec` - never through a
shell, so no argument can inject commands.

How arguments become argv (``command``, the fixed ``args``, a ``subcommand``
positional, then options in declared order, the tool's ``separator``, then the
positionals in declared order):

* ``boolean`` option: ``True`` gives the flag alone; ``False``/``None`` omit it.
* ``string``/``integer``/``number`` option: the value attached to the flag
  (``--max-time=30``, ``-XGET``), or with ``option_values: next`` the flag, then
  the value as the next item; either way the value can't become an option.
* ``array`` option: the flag repeated with each item.
* positionals come after the separator (``--`` unless the file says otherwise), so
  no value can be read as an option; a tool without one refuses values that start
  with ``-``. Values are checked against ``choices``, ``pattern`` and, with
  ``path: true``, the tool's declared ``paths``.
* ``passthrough`` positionals (free-form options) exist only in tools marked
  ``unsafe_passthrough``, which keep the older argv rules and are reported unsafe.

Each call gets only the environment the file declares (plus PATH and locale),
never the host's; a tool with ``network: true`` reaches the network through the
host's egress proxy (:mod:`py_code_mode.tools._egress`). ``${VAR}`` values of its
``env`` are masked in its output and errors.

Each run gets closed stdin, its own process group (killed as a whole on timeout,
so grandchildren die too; processes left in the group after the command exits
are killed as well), and capped stdout/stderr buffers that keep draining the
pipes past the cap so a chatty program never blocks or exhausts memory.

This module imports only the standard library: the pydantic YAML models live in
:mod:`py_code_mode.tools.models` and are imported when a YAML file is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from py_code_mode._private.tool_calls import reject_missing, reject_unknown, show
from py_code_mode._private.tool_jail import jailed_tool_argv
from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.tools._egress import AddressPolicy, IPNetwork
from py_code_mode.tools._egress_proxy import EgressProxy
from py_code_mode.tools._expand import Redactor
from py_code_mode.tools.protocol import CallableSpec, ParameterSpec

__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "ArgType",
    "CliArgument",
    "CliRecipe",
    "CliTool",
    "CliToolSpec",
    "describe_type_error",
]

logger = logging.getLogger(__name__)

ArgType = Literal["boolean", "string", "integer", "number", "array"]

DEFAULT_OUTPUT_LIMIT: Final = 10 * 1024 * 1024
"""Bytes kept of each of stdout and stderr; the rest is drained and dropped."""

_EXCERPT_CHARS: Final = 2000
_STRAGGLER_GRACE: Final = 0.5
"""Seconds a background child may keep the pipes open after the command exited."""
_REAP_TIMEOUT: Final = 5.0

BASE_ENV: Final = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
"""The whole environment of a CLI tool besides what its file declares in ``env:``."""
_PROXY_VARS: Final = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


def _is_array_item(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return not isinstance(value, str) or ("\x00" not in value and _encodable(value))


def _encodable(text: str) -> bool:
    """Whether ``text`` becomes argv bytes (``\udc80``-``\udcff`` stand for raw bytes)."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def describe_type_error(arg_type: ArgType, value: Any) -> str | None:
    """Say why ``value`` does not fit an argument of ``arg_type``; None when it does.

    ``None`` always fits (it means "not given"). ``bool`` is not accepted as an
    integer or number: ``True`` for ``max_time`` is almost certainly a mistake.
    """
    if value is None:
        return None
    expected: str | None = None
    if arg_type == "boolean":
        if not isinstance(value, bool):
            expected = "a boolean (True or False)"
    elif arg_type == "string":
        if not isinstance(value, str):
            expected = "a string"
        elif "\x00" in value:
            expected = "a string without NUL characters"
        elif not _encodable(value):
            expected = "a string without lone surrogates (it must encode for the command line)"
    elif arg_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            expected = "an integer"
    elif arg_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            expected = "a number"
        elif not math.isfinite(value):
            expected = "a finite number"
    elif not isinstance(value, list | tuple):
        expected = "a list of strings or numbers"
    else:
        for index, item in enumerate(value):
            if not _is_array_item(item):
                return f"must be a list of strings or numbers; item {index} is {show(item)}"
    if expected is None:
        return None
    return f"must be {expected}, got {show(value)}"


def _render_scalar(value: str | int | float) -> str:
    return value if isinstance(value, str) else repr(value)


@dataclass(frozen=True, slots=True)
class CliArgument:
    """One option or positional of a CLI tool's schema, resolved from the YAML.

    Attributes:
        name: The Python keyword callers use (``max_time`` for the YAML key ``max-time``).
        type: One of :data:`ArgType`.
        kind: ``"option"`` or ``"positional"``.
        flag: For options, the flag written to argv (``-s``, ``--max-time``).
        required: Positionals only: a call without it is refused.
        passthrough: Positionals only: values may be options for the program
            and never trigger the ``--`` separator.
        description: Shown to agents in ``tools.list()``.
    """

    name: str
    type: ArgType
    kind: Literal["option", "positional"]
    flag: str = ""
    required: bool = False
    passthrough: bool = False
    description: str = ""
    pattern: str | None = None
    choices: tuple[str, ...] | None = None
    path: bool = False
    cwd: bool = False
    subcommand: bool = False
    separator: str | None = None

    def to_parameter(self) -> ParameterSpec:
        """Describe the argument for agents, with the flag it maps to."""
        description = self.description
        if self.kind == "option":
            description = f"{description} ({self.flag})" if description else self.flag
        return ParameterSpec(
            name=self.name, type=self.type, description=description, required=self.required
        )


@dataclass(frozen=True, slots=True)
class CliRecipe:
    """A named, preset way of calling a CLI tool: ``tools.curl.get(url=...)``.

    Attributes:
        name: The attribute agents call.
        description: What the recipe does.
        preset: Argument values fixed by the recipe (by argument name).
        parameters: What the caller may pass; ``default`` is used when the
            caller does not, and overrides ``preset`` for that argument.
    """

    name: str
    description: str = ""
    preset: Mapping[str, Any] = field(default_factory=dict)
    parameters: tuple[ParameterSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class CliToolSpec:
    """Everything a :class:`CliTool` needs, as plain data (validated beforehand).

    Attributes:
        name: Tool identifier (``tools.<name>``).
        command: Executable name looked up on PATH, or a path.
        description: What the tool is for.
        args: Fixed argv items placed right after the command.
        timeout: Seconds a call may take before its process group is killed.
        arguments: Options and positionals of the schema, options first.
        recipes: Named presets.
        success_exit_codes: Exit codes that mean success (``grep`` uses 1 for
            "no match", which is not an error).
        source: The YAML file the tool came from, for messages.
        paths: Host paths the call may read (its per-call jail shows only these).
        network: Whether the call gets the network (else it has none when jailed).
    """

    name: str
    command: str
    description: str = ""
    args: tuple[str, ...] = ()
    timeout: float = 60.0
    arguments: tuple[CliArgument, ...] = ()
    recipes: tuple[CliRecipe, ...] = ()
    success_exit_codes: frozenset[int] = frozenset({0})
    source: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    paths: tuple[str, ...] = ()
    network: bool = False
    allow_addresses: tuple[IPNetwork, ...] = ()
    separator: str | None = "--"
    option_values: Literal["attached", "next"] = "attached"
    unsafe_passthrough: bool = False
    redactor: Redactor = field(default_factory=Redactor)

    @property
    def unsafe(self) -> str | None:
        """Why the tool is unsafe to hand to untrusted code, or None."""
        if self.unsafe_passthrough:
            return (
                "unsafe_passthrough: agent code may pass any option of the program, "
                "which can write files or run commands on the host"
            )
        return None


class _CappedBuffer:
    """Collects up to ``limit`` bytes and counts what it had to drop."""

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self._limit = limit
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        room = self._limit - len(self._data)
        if room > 0:
            self._data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        text = self._data.decode("utf-8", errors="replace")
        if self.dropped:
            text += (
                f"\n[output truncated: kept the first {self._limit} bytes, "
                f"dropped {self.dropped} more]"
            )
        return text


class _CaptureProtocol(asyncio.SubprocessProtocol):
    """Collects output as it arrives and reports exit and pipe closing separately.

    ``asyncio.subprocess.Process.wait()`` only returns once the pipes are closed too,
    which a background grandchild can postpone forever; here the exit is seen as soon
    as it happens. Data is consumed as it arrives, so the child never blocks on a
    full pipe, whatever the cap.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.stdout = _CappedBuffer(limit)
        self.stderr = _CappedBuffer(limit)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed: asyncio.Future[None] = loop.create_future()
        self._open_pipes = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        chunk = data.encode() if isinstance(data, str) else data
        (self.stdout if fd == 1 else self.stderr).feed(chunk)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open_pipes.discard(fd)
        if not self._open_pipes and not self.pipes_closed.done():
            self.pipes_closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _kill_spawned(spawn: asyncio.Future[tuple[asyncio.SubprocessTransport, Any]]) -> None:
    """Kill the process group of a call cancelled while its process was starting."""
    if spawn.cancelled() or spawn.exception() is not None:
        return
    transport = spawn.result()[0]
    _kill_group(transport.get_pid())
    transport.close()


def _excerpt(text: str) -> str:
    text = text.strip()
    if len(text) > _EXCERPT_CHARS:
        text = "..." + text[-_EXCERPT_CHARS:]
    return text


class CliTool:
    """A command line program exposed as a tool (implements ``ToolAdapter``).

    Build one from a YAML mapping with :func:`py_code_mode.tools.models.load_cli_tool`,
    or from an already validated :class:`CliToolSpec`.
    """

    def __init__(self, spec: CliToolSpec, *, output_limit: int = DEFAULT_OUTPUT_LIMIT) -> None:
        if output_limit < 1:
            raise ConfigError(f"output_limit must be a positive byte count, got {output_limit}")
        self.name = spec.name
        self.description = spec.description
        self.kind = "cli"
        self.spec = spec
        self._output_limit = output_limit
        self._arguments = {arg.name: arg for arg in spec.arguments}
        self._recipes = {recipe.name: recipe for recipe in spec.recipes}
        self._running: set[int] = set()
        self._proxy = (
            EgressProxy(AddressPolicy(spec.allow_addresses, tool=spec.name))
            if spec.network
            else None
        )
        self.unsafe = spec.unsafe

    def __repr__(self) -> str:
        return f"CliTool(name={self.name!r}, command={self.spec.command!r})"

    # -- description -------------------------------------------------------------

    def direct_parameters(self) -> tuple[ParameterSpec, ...]:
        """Parameters of the tool called itself: ``tools.<name>(**kwargs)``."""
        return tuple(arg.to_parameter() for arg in self.spec.arguments)

    async def callables(self) -> list[CallableSpec]:
        """The recipes, in declared order."""
        return [
            CallableSpec(name=r.name, description=r.description, parameters=r.parameters)
            for r in self.spec.recipes
        ]

    # -- calling -----------------------------------------------------------------

    def build_argv(self, callable_name: str | None, args: Mapping[str, Any]) -> list[str]:
        """Check ``args`` and turn them into the argv a call would run.

        Args:
            callable_name: A recipe name, or None for the tool itself.
            args: Keyword arguments of the call.

        Raises:
            ToolNotFoundError: No recipe of that name.
            ToolError: Unknown, missing or mistyped arguments.
        """
        return self._prepare(callable_name, args)[0]

    async def call(self, callable_name: str | None, args: Mapping[str, Any]) -> str:
        """Run the program and return its stdout as text.

        Raises:
            ToolNotFoundError: No recipe of that name.
            ToolError: Bad arguments, command not found, timeout, or an exit code
                not in ``success_exit_codes`` (``stderr`` attribute set).
        """
        argv, cwd = self._prepare(callable_name, args)
        refused_before = self._proxy.refused if self._proxy is not None else 0
        try:
            return self.spec.redactor.redact(await self._run(callable_name, argv, cwd))
        except ToolError as exc:
            redact = self.spec.redactor.redact
            message = str(exc)
            if self._proxy is not None and self._proxy.refused != refused_before:
                message += f" (the host refused the connection: {self._proxy.refusals[-1]})"
            raise ToolError(redact(message), tool=self.name, stderr=redact(exc.stderr)) from None

    async def aclose(self) -> None:
        """Kill the process groups of calls still running. Idempotent."""
        for pgid in list(self._running):
            _kill_group(pgid)
        if self._proxy is not None:
            await self._proxy.aclose()

    async def environment(self, *, jailed: bool = False) -> dict[str, str]:
        """The whole environment a call gets; nothing of the host's own.

        A minimal base (PATH, locale), the declared ``env:``, and for ``network: true``
        the egress proxy: unjailed, its loopback URL on the host; jailed, the jail's
        launcher sets the variables to its forwarder inside the jail.
        """
        env = {**BASE_ENV, **self.spec.env}
        if self._proxy is not None:
            if not jailed:
                env.update(dict.fromkeys(_PROXY_VARS, await self._proxy.url()))
            env.pop("no_proxy", None)
            env.pop("NO_PROXY", None)
        return env

    # -- internals ---------------------------------------------------------------

    def _where(self, callable_name: str | None) -> str:
        if callable_name is None:
            return f"tool '{self.name}'"
        return f"tool '{self.name}' recipe '{callable_name}'"

    def _bind(
        self, callable_name: str | None, args: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        where = self._where(callable_name)
        if callable_name is None:
            reject_unknown(where, args, list(self._arguments), tool=self.name)
            return where, dict(args)

        recipe = self._recipes.get(callable_name)
        if recipe is None:
            recipes = ", ".join(self._recipes) or "none"
            raise ToolNotFoundError(
                f"tool '{self.name}' has no recipe '{callable_name}'; recipes: {recipes}. "
                f"The tool itself is called as tools.{self.name}(...)",
                tool=self.name,
            )
        reject_unknown(where, args, [p.name for p in recipe.parameters], tool=self.name)
        values = dict(recipe.preset)
        missing: list[str] = []
        for param in recipe.parameters:
            if param.name in args:
                values[param.name] = args[param.name]
            elif param.default is not None:
                values[param.name] = param.default
            if param.required and values.get(param.name) is None:
                missing.append(param.name)
        reject_missing(where, missing, tool=self.name)
        return where, values

    def _prepare(
        self, callable_name: str | None, args: Mapping[str, Any]
    ) -> tuple[list[str], str | None]:
        where, values = self._bind(callable_name, args)
        if self.spec.unsafe_passthrough:
            tail, cwd = self._render_unsafe(where, values), None
        else:
            tail, cwd = self._render(where, values)
        return [self.spec.command, *self.spec.args, *tail], cwd

    def _check_value(self, where: str, arg: CliArgument, text: str, base: str | None) -> None:
        if arg.choices is not None and text not in arg.choices:
            raise ToolError(
                f"{where}: argument '{arg.name}' must be one of {', '.join(arg.choices)}; "
                f"got {show(text)}",
                tool=self.name,
            )
        if arg.pattern is not None and re.fullmatch(arg.pattern, text, re.DOTALL) is None:
            raise ToolError(
                f"{where}: argument '{arg.name}' must match {arg.pattern!r}; got {show(text)}",
                tool=self.name,
            )
        if arg.path:
            self._inside_paths(where, arg, text, base)

    def _inside_paths(self, where: str, arg: CliArgument, text: str, base: str | None) -> str:
        start = base or (self.spec.paths[0] if self.spec.paths else os.getcwd())
        real = os.path.realpath(os.path.join(start, text))
        for root in self.spec.paths:
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                return real
        raise ToolError(
            f"{where}: argument '{arg.name}' names {show(text)}, which is outside the "
            f"directories this tool may use ({', '.join(self.spec.paths) or 'none'}); "
            "the tool file declares them under `paths:`",
            tool=self.name,
        )

    def _option_items(self, where: str, arg: CliArgument, text: str) -> list[str]:
        """One option with its value, in a form the program cannot read otherwise.

        ``--flag=value`` and ``-Fvalue`` keep the value attached to its flag, so a
        value such as ``--output=/x`` stays data. Programs that do not read the
        attached forms but always take the next item verbatim as the value (curl)
        say ``option_values: next`` in their file.
        """
        flag = arg.flag
        if self.spec.option_values == "next":
            return [flag, text]
        if flag.startswith("--"):
            return [f"{flag}={text}"]
        if len(flag) == 2 and text:
            return [f"{flag}{text}"]
        if text.startswith("-"):
            raise ToolError(
                f"{where}: argument '{arg.name}' must not start with '-'; got {show(text)}",
                tool=self.name,
            )
        return [flag, text]

    def _render(self, where: str, values: Mapping[str, Any]) -> tuple[list[str], str | None]:
        """Argv after the command and fixed args, and the working directory of the call.

        Options come first, each with its value attached; then the tool's
        ``separator`` (``--``), then the positionals, which therefore can never be
        read as options. A tool without a separator refuses positionals that start
        with ``-``.
        """
        cwd: str | None = None
        for arg in self.spec.arguments:
            value = values.get(arg.name)
            if arg.cwd and isinstance(value, str) and value:
                self._check_value(where, arg, value, None)
                cwd = self._inside_paths(where, arg, value, None)
        base = cwd or (self.spec.paths[0] if self.spec.paths else None)
        head: list[str] = []
        values_given: list[str] = []
        options: list[str] = []
        positionals: list[str] = []
        missing: list[str] = []
        for arg in self.spec.arguments:
            value = values.get(arg.name)
            problem = describe_type_error(arg.type, value)
            if problem is not None:
                raise ToolError(f"{where}: argument '{arg.name}' {problem}", tool=self.name)
            if value is None or value is False or (arg.type == "array" and not value):
                if arg.required:
                    missing.append(arg.name)
                continue
            if arg.cwd:
                continue
            if arg.kind == "option" and value is True:
                options.append(arg.flag)
                continue
            items = [_render_scalar(v) for v in (value if arg.type == "array" else [value])]
            for item in items:
                self._check_value(where, arg, item, base)
            if arg.kind == "option":
                for item in items:
                    options.extend(self._option_items(where, arg, item))
            elif arg.subcommand:
                head.extend(items)  # one of its declared choices, never an option
            else:
                positionals.extend([arg.separator, *items] if arg.separator else items)
                values_given.extend(items)
        reject_missing(where, missing, tool=self.name)
        if positionals:
            if self.spec.separator is not None:
                positionals.insert(0, self.spec.separator)
            elif any(item.startswith("-") for item in values_given):
                raise ToolError(
                    f"{where}: a positional argument starts with '-', and this program has "
                    "no end-of-options marker (separator: null in its file)",
                    tool=self.name,
                )
        return head + options + positionals, cwd or base

    def _render_unsafe(self, where: str, values: Mapping[str, Any]) -> list[str]:
        """The argv of an ``unsafe_passthrough`` tool: passthrough values go as given."""
        options: list[str] = []
        positionals: list[str] = []
        missing: list[str] = []
        first_regular: int | None = None
        needs_separator = False
        for arg in self.spec.arguments:
            value = values.get(arg.name)
            problem = describe_type_error(arg.type, value)
            if problem is not None:
                raise ToolError(f"{where}: argument '{arg.name}' {problem}", tool=self.name)
            if value is None or value is False or (arg.type == "array" and not value):
                if arg.required:
                    missing.append(arg.name)
                continue
            if arg.kind == "option":
                if value is True:
                    options.append(arg.flag)
                elif arg.type == "array":
                    for item in value:
                        options.extend((arg.flag, _render_scalar(item)))
                else:
                    options.extend((arg.flag, _render_scalar(value)))
                continue
            items = [_render_scalar(v) for v in (value if arg.type == "array" else [value])]
            if not arg.passthrough:
                if first_regular is None:
                    first_regular = len(positionals)
                needs_separator = needs_separator or any(i.startswith("-") for i in items)
            positionals.extend(items)
        reject_missing(where, missing, tool=self.name)
        if needs_separator and first_regular is not None:
            positionals.insert(first_regular, "--")
        return options + positionals

    async def _run(self, callable_name: str | None, argv: Sequence[str], cwd: str | None) -> str:
        where = self._where(callable_name)
        loop = asyncio.get_running_loop()
        # The program is found on the host's PATH; it then runs with the minimal one.
        program = shutil.which(argv[0]) if os.sep not in argv[0] else argv[0]
        if program is None:
            raise ToolError(
                f"{where}: command '{argv[0]}' not found on PATH; install it", tool=self.name
            )
        jailed = await jailed_tool_argv(
            [program, *argv[1:]],
            paths=self.spec.paths,
            egress_socket=self._proxy.unix_socket if self._proxy is not None else None,
            cwd=cwd,
        )
        env = await self.environment(jailed=len(jailed) != len(argv))
        spawn = asyncio.ensure_future(
            loop.subprocess_exec(
                lambda: _CaptureProtocol(loop, self._output_limit),
                *jailed,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=env,
                cwd=cwd,
            )
        )
        try:
            # Shielded: a cancel during the spawn would otherwise make asyncio wait for
            # every process holding the pipes (a background grandchild: forever).
            transport, protocol = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            spawn.add_done_callback(_kill_spawned)
            raise
        except FileNotFoundError as exc:
            command = self.spec.command
            if os.sep in command:
                detail = f"command '{command}' does not exist"
            else:
                detail = f"command '{command}' not found on PATH; install it"
            raise ToolError(f"{where}: {detail}", tool=self.name) from exc
        except PermissionError as exc:
            raise ToolError(
                f"{where}: command '{self.spec.command}' is not executable", tool=self.name
            ) from exc
        except OSError as exc:
            raise ToolError(
                f"{where}: could not start command '{self.spec.command}': {exc}", tool=self.name
            ) from exc

        pgid = transport.get_pid()  # start_new_session: the child leads a new process group
        self._running.add(pgid)
        timed_out = False
        try:
            try:
                async with asyncio.timeout(self.spec.timeout):
                    await asyncio.shield(protocol.exited)
            except TimeoutError:
                timed_out = True
            else:
                # Background children may hold the pipes open after the command exited;
                # give them a moment, then they are killed with the group below.
                await asyncio.wait([protocol.pipes_closed], timeout=_STRAGGLER_GRACE)
        finally:
            _kill_group(pgid)
            self._running.discard(pgid)
            await asyncio.wait([protocol.exited], timeout=_REAP_TIMEOUT)
            await asyncio.wait([protocol.pipes_closed], timeout=_STRAGGLER_GRACE)
            transport.close()

        err_text = protocol.stderr.text()
        if timed_out:
            raise ToolError(
                f"tool '{self.name}' timed out after {self.spec.timeout:g} s"
                + ("" if callable_name is None else f" (recipe '{callable_name}')"),
                tool=self.name,
                stderr=err_text,
            )
        code = transport.get_returncode()
        if len(jailed) != len(argv) and code is not None and code > 128:
            code = 128 - code  # bwrap reports its child's death by signal n as 128 + n
        logger.debug("%s exited with code %s", where, code)
        if code in self.spec.success_exit_codes:
            return protocol.stdout.text()
        if code is not None and code < 0:
            try:
                status = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                status = f"was killed by signal {-code}"
        else:
            status = f"failed with exit code {code}"
        detail = _excerpt(err_text)
        if not detail and (out_excerpt := _excerpt(protocol.stdout.text())):
            detail = f"(no stderr; stdout:) {out_excerpt}"
        message = f"{where} {status}" + (f": {detail}" if detail else " (no output)")
        raise ToolError(message, tool=self.name, stderr=err_text)
