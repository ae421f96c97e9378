"""Broken tool and workflow files, so the agent sees them and not only the server log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from py_code_mode.session import Session

__all__ = ["format_problems", "tool_problems", "workflow_problems"]


async def tool_problems(session: Session) -> list[dict[str, str]]:
    """Tool files that failed to load: ``{path, message}`` each."""
    host = await session._library()
    return [{"path": p.path, "message": p.message} for p in host.tools.problems]


def workflow_problems(session: Session) -> list[dict[str, str]]:
    """Workflow files the last listing skipped (file storage only): ``{name, message}``."""
    found: Any = getattr(session.storage, "workflow_problems", None)
    if not isinstance(found, dict):
        return []
    return [{"name": str(name), "message": str(msg)} for name, msg in sorted(found.items())]


def format_problems(what: str, problems: list[dict[str, str]]) -> str:
    """Text listing files that failed to load, or ``""``."""
    if not problems:
        return ""
    lines = [f"{len(problems)} {what} file(s) failed to load (fix or remove them):"]
    lines.extend(f"- {p.get('path') or p.get('name')}: {p['message']}" for p in problems)
    return "\n".join(lines)
