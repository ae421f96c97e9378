"""The ``run_code`` reply: one capped copy of the output, the rest saved aside, images.

Output longer than the reply can carry is cut once (in the text block) and saved
whole as an artifact named in the reply, so the agent can page through it. Images a
run showed come back as MCP image content when they are small enough; the original
always stays an artifact.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from typing import TYPE_CHECKING

from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent

from py_code_mode.errors import PyCodeModeError
from py_code_mode.mcp_server.formatting import (
    DEFAULT_MAX_CHARS,
    RUN_OUTPUT_MAX_CHARS,
    format_run_result,
)

if TYPE_CHECKING:
    from py_code_mode.result import ExecutionResult
    from py_code_mode.session import Session

__all__ = ["IMAGE_MAX_BYTES", "OUTPUT_ARTIFACT_PREFIX", "OutputSaves", "image_mime", "run_reply"]

logger = logging.getLogger(__name__)

OUTPUT_ARTIFACT_PREFIX = "run-output/"
KEEP_OUTPUTS = 20
"""Saved full outputs kept; older ones are deleted when a new one is saved."""
MAX_IMAGES = 8
"""Images one reply carries; more are left as artifacts."""
IMAGE_MAX_BYTES = 1_000_000
"""Images larger than this are named (as artifacts) but not sent inline."""

_MIME_BY_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def _output_name() -> str:
    return f"{OUTPUT_ARTIFACT_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.txt"


def image_mime(data: bytes) -> str | None:
    """MIME type of PNG or JPEG bytes, else ``None``."""
    for magic, mime in _MIME_BY_MAGIC:
        if data.startswith(magic):
            return mime
    return None


class OutputSaves:
    """Full outputs being saved after their reply went out.

    Saving (an fsynced file write) would double the time of a big-output reply, so
    it runs after the reply is sent; every call that could read such an artifact
    waits for pending saves first, so the agent never sees it missing. A failed
    save is reported in the next ``run_code`` reply.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._failures: list[str] = []

    def start(self, session: Session, name: str, stdout: str) -> None:
        """Begin saving ``stdout`` as artifact ``name``."""
        task = asyncio.create_task(self._save(session, name, stdout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _save(self, session: Session, name: str, stdout: str) -> None:
        try:
            await session.save_artifact(
                name, stdout, description="full stdout of a run_code call (the reply shows a cut)"
            )
        except PyCodeModeError as exc:
            logger.warning("could not save the full output as %s: %s", name, exc)
            self._failures.append(f"note: the full output {name!r} could not be saved: {exc}")
            return
        try:
            await self._prune(session)
        except PyCodeModeError as exc:
            logger.warning("could not remove old run outputs: %s", exc)

    @staticmethod
    async def _prune(session: Session) -> None:
        """Keep the newest :data:`KEEP_OUTPUTS` saved outputs; they are copies, not data."""
        outputs = [
            entry
            for entry in await session.list_artifacts()
            if str(entry.get("name", "")).startswith(OUTPUT_ARTIFACT_PREFIX)
        ]
        if len(outputs) <= KEEP_OUTPUTS:
            return
        outputs.sort(key=lambda e: (e.get("created_at") or 0, str(e["name"])))
        for entry in outputs[:-KEEP_OUTPUTS]:
            await session.delete_artifact(str(entry["name"]))

    async def wait(self) -> None:
        """Return once every pending save has finished."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def failures(self) -> list[str]:
        """Failures since the last call, as notes for a reply."""
        found, self._failures = self._failures, []
        return found


async def _images(session: Session, names: list[str]) -> tuple[list[ContentBlock], list[str]]:
    blocks: list[ContentBlock] = []
    notes: list[str] = []
    for name in names:
        try:
            data = await session.load_artifact(name)
        except PyCodeModeError as exc:
            notes.append(f"image {name!r} could not be read: {exc}")
            continue
        mime = image_mime(data) if isinstance(data, bytes) else None
        if mime is None or not isinstance(data, bytes):
            notes.append(f"artifact {name!r} is not a PNG or JPEG image")
        elif len(data) > IMAGE_MAX_BYTES:
            notes.append(
                f"image {name!r} ({len(data)} bytes) is larger than {IMAGE_MAX_BYTES} bytes, "
                "so it is not shown; it is kept as that artifact"
            )
        else:
            blocks.append(ImageContent(data=base64.b64encode(data).decode("ascii"), mime_type=mime))
            notes.append(f"image shown below is kept as artifact {name!r}")
    return blocks, notes


async def run_reply(
    session: Session,
    result: ExecutionResult,
    *,
    saves: OutputSaves,
    max_chars: int = DEFAULT_MAX_CHARS,
    stdout_limit: int = RUN_OUTPUT_MAX_CHARS,
) -> CallToolResult:
    """The ``run_code`` tool result for ``result``.

    Args:
        session: Where the full output and shown images are stored.
        result: The finished run.
        saves: Saves the full output once the reply is on its way.
        max_chars: Characters kept of the value and the error.
        stdout_limit: Characters of stdout shown before the output is saved aside.
    """
    artifact: str | None = None
    notes = saves.failures()
    if len(result.stdout) > stdout_limit:
        artifact = _output_name()
        saves.start(session, artifact, result.stdout)
    text, data = format_run_result(
        result, max_chars, output_artifact=artifact, stdout_limit=stdout_limit
    )
    content: list[ContentBlock] = []
    images = result.metadata.get("images")
    if isinstance(images, list) and images:
        names = [str(i) for i in images[:MAX_IMAGES]]
        blocks, image_notes = await _images(session, names)
        data.images = names
        notes.extend(image_notes)
        content.extend(blocks)
    if notes:
        text = text + "\n\n" + "\n".join(notes)
    return CallToolResult(
        content=[TextContent(type="text", text=text), *content],
        structured_content=data.model_dump(mode="json"),
    )
