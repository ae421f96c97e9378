"""Commands of the ``artifacts`` namespace: persistent data by name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from py_code_mode._private.commands.base import Input
from py_code_mode._private.commands.fields import (
    ArtifactName,
    Description,
    Metadata,
    check_description,
)

if TYPE_CHECKING:
    from py_code_mode._private.services import HostServices


class Named(Input):
    name: ArtifactName


class Save(Input):
    name: ArtifactName
    data: Any = Field(description="str, bytes or JSON data")
    description: Description = ""
    metadata: Metadata = None


async def save(host: HostServices, args: Save) -> dict[str, Any]:
    check_description(host, args.description, f"artifact {args.name!r}", "artifacts")
    info = await host.storage.save_artifact(
        args.name,
        args.data,
        description=args.description or "",
        metadata=args.metadata,
        quotas=host.quotas,
    )
    return info.to_dict()


async def load(host: HostServices, args: Named) -> Any:
    return await host.storage.load_artifact(args.name)


async def list_(host: HostServices, _: Input) -> list[dict[str, Any]]:
    return [info.to_dict() for info in await host.storage.list_artifacts()]


async def exists(host: HostServices, args: Named) -> bool:
    return await host.storage.get_artifact_info(args.name) is not None


async def info(host: HostServices, args: Named) -> dict[str, Any] | None:
    found = await host.storage.get_artifact_info(args.name)
    return None if found is None else found.to_dict()


async def delete(host: HostServices, args: Named) -> bool:
    return await host.storage.delete_artifact(args.name)
