"""Commands of the ``deps`` namespace: packages of the execution environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field

from py_code_mode._private.commands.base import Input
from py_code_mode._private.requirements import dependency_name, validate_requirement
from py_code_mode.errors import DependencyError

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices
    from py_code_mode.execution.protocol import PackageEnvironment

_OUTPUT_CHARS = 2_000


class Spec(Input):
    spec: Annotated[
        str,
        BeforeValidator(validate_requirement),
        Field(description="a PEP 508 requirement, e.g. 'pandas>=2'"),
    ]


async def list_(host: HostServices, _: Input) -> list[str]:
    return await host.storage.list_deps()


async def add(host: HostServices, args: Spec) -> dict[str, Any]:
    """Nothing is persisted when the install fails."""
    environment = _changeable(host, "add")
    async with host.deps_lock:
        output = await environment.install([args.spec])
        await host.storage.add_dep(args.spec)
    return {"spec": args.spec, "installed": True, "output": _tail(output)}


async def remove(host: HostServices, args: Spec) -> bool:
    environment = _changeable(host, "remove")
    name = dependency_name(args.spec)
    async with host.deps_lock:
        if name not in {dependency_name(s) for s in await host.storage.list_deps()}:
            return False
        await environment.uninstall([name])
        return await host.storage.remove_dep(name)


async def sync(host: HostServices, _: Input) -> dict[str, Any]:
    environment = _environment(host)
    specs = await host.storage.list_deps()
    if not specs:
        return {"installed": [], "output": ""}
    async with host.deps_lock:
        output = await environment.install(specs)
    return {"installed": specs, "output": _tail(output)}


def _changeable(host: HostServices, action: str) -> PackageEnvironment:
    if not host.allow_runtime_deps:
        raise DependencyError(
            f"deps.{action}() is disabled: this session does not allow runtime "
            "dependency changes (allow_runtime_deps=False). Add the package to the "
            "executor's deps or requirements file and restart the session."
        )
    return _environment(host)


def _environment(host: HostServices) -> PackageEnvironment:
    if host.environment is None:
        raise DependencyError("this session has no package environment to install into")
    return host.environment


def _tail(text: str) -> str:
    return text if len(text) <= _OUTPUT_CHARS else "..." + text[-_OUTPUT_CHARS:]
