"""Commands on the session itself: running code and clearing its variables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from py_code_mode._private.commands.base import Input
from py_code_mode.quotas import text_bytes

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices
    from py_code_mode.result import ExecutionResult


class Run(Input):
    code: str = Field(description="Python source")
    timeout: float | None = Field(
        default=None, gt=0, description="a positive number of seconds, or null"
    )


async def run(host: HostServices, args: Run) -> ExecutionResult:
    limit = host.quotas.max_code_bytes
    host.quotas.check("max_code_bytes", text_bytes(args.code, limit), "the code", "session")
    return await host.executor.run(args.code, timeout=args.timeout)


async def reset(host: HostServices, _: Input) -> None:
    await host.executor.reset()
