"""What a command is, and how its input is checked once at the host boundary.

A :class:`Command` declares one operation that crosses the host boundary: its name,
its input model, the shape of its result, a one-line description, and flags that
adapters (the worker channel, the facade, MCP, the CLI) and later policy read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from py_code_mode._private.tool_calls import show
from py_code_mode.errors import PyCodeModeError
from py_code_mode.worker.errors import ERROR_TYPES, namespace_error_type

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices

__all__ = ["Command", "Input"]

_In = TypeVar("_In", bound="Input")


class Input(BaseModel):
    """Base of command inputs: unknown arguments refused, no silent type coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


@dataclass(frozen=True)
class Command(Generic[_In]):
    """One operation of the host.

    Attributes:
        name: ``"<namespace>.<verb>"``, the worker RPC method name.
        input: Pydantic model of the arguments.
        result: The shape of the result, for readers and generated docs.
        description: One line on what it does.
        run: The implementation, given the host and the validated input.
        read_only: Changes nothing.
        destructive: Removes or overwrites data.
        needs_executor: Needs a started executor, not only storage and tools.
        open_world: May reach outside the library (tools, the network, package indexes).
        agent: Agent code may call it through its namespaces.
    """

    name: str
    input: type[_In]
    result: str
    description: str
    run: Callable[[HostServices, _In], Awaitable[Any]]
    read_only: bool = False
    destructive: bool = False
    needs_executor: bool = False
    open_world: bool = False
    agent: bool = True

    def parse(self, params: Mapping[str, Any]) -> _In:
        """The validated input.

        Raises:
            PyCodeModeError: The namespace's error class (``WorkflowError``, ...), or a
                rule's own (``InvalidNameError``), with one line per mistake.
        """
        try:
            return self.input.model_validate(dict(params))
        except ValidationError as exc:
            raise self._invalid(exc) from None

    async def __call__(self, host: HostServices, params: Mapping[str, Any]) -> Any:
        """Validate ``params`` and run the command."""
        return await self.run(host, self.parse(params))

    def _invalid(self, exc: ValidationError) -> PyCodeModeError:
        fields = self.input.model_fields
        lines: list[str] = []
        for error in exc.errors(include_url=False):
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, PyCodeModeError):
                return cause  # a library rule (a name, a spec) words its own message
            arg = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                lines.append(f"unknown argument {arg!r}; accepted: {', '.join(fields) or 'none'}")
                continue
            if error["type"] == "missing":
                lines.append(f"missing required argument {arg!r}")
                continue
            name, *inside = (str(part) for part in error["loc"])
            where = f"argument {name!r}"
            if inside:  # inside a dict argument: which key, or the key itself
                where += f" key {inside[0]}" if inside[-1] == "[key]" else f" at {'.'.join(inside)}"
            line = f"{where}: {error['msg'][0].lower()}{error['msg'][1:]}"
            line += f", got {show(error['input'])}"
            field = fields.get(str(error["loc"][0])) if error["loc"] else None
            if field is not None and field.description:
                line += f"; send {field.description}"
            lines.append(line)
        error_class = ERROR_TYPES[namespace_error_type(self.name)]
        return error_class(f"{self.name}: " + "; ".join(lines))
