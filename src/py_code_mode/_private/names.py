"""Validation of user-chosen names: workflows and artifacts.

Shared by every storage backend so that a name accepted by one is accepted by all.
"""

from __future__ import annotations

import keyword
import re

from py_code_mode.errors import InvalidNameError

__all__ = [
    "RESERVED_WORKFLOW_NAMES",
    "is_keyword",
    "validate_artifact_name",
    "validate_workflow_name",
]

RESERVED_WORKFLOW_NAMES = frozenset({"list", "search", "get", "create", "delete", "invoke"})
"""Methods of the ``workflows`` namespace; a workflow of that name would be unreachable."""

_SOFT_KEYWORDS = frozenset({"_", "case", "match", "type"})
"""Fixed rather than ``keyword.softkwlist``, which grows between Python versions: a name
accepted on one interpreter must not become invalid on another that shares the library."""

_ARTIFACT_MAX_LEN = 255
_ARTIFACT_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]*$")


def is_keyword(name: str) -> bool:
    """True for hard and soft keywords, with the same answer on every Python version.

    Names of workflows, tools and their callables are refused (or renamed) when this
    is true: such a name reads badly in agent code, and whether it is accepted must
    not depend on the interpreter that happens to load the library.
    """
    return keyword.iskeyword(name) or name in _SOFT_KEYWORDS


def validate_workflow_name(name: object) -> str:
    """Return ``name`` if it can name a workflow, else raise with the reason.

    Raises:
        InvalidNameError: Not a str, not an identifier, a keyword, private, or a
            method name of the ``workflows`` namespace.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"workflow name must be a non-empty string, got {name!r}")
    if not name.isidentifier() or not name.isascii():
        raise InvalidNameError(
            f"workflow name {name!r} must be an ASCII Python identifier "
            "(letters, digits, underscores; not starting with a digit), e.g. 'fetch_json'"
        )
    if is_keyword(name):
        raise InvalidNameError(f"workflow name {name!r} is a Python keyword; pick another name")
    if name.startswith("_"):
        raise InvalidNameError(f"workflow name {name!r} must not start with an underscore")
    if name in RESERVED_WORKFLOW_NAMES:
        raise InvalidNameError(
            f"workflow name {name!r} clashes with the method workflows.{name}(); "
            f"reserved: {', '.join(sorted(RESERVED_WORKFLOW_NAMES))}"
        )
    return name


def validate_artifact_name(name: object) -> str:
    """Return ``name`` if it is a safe relative artifact name, else raise.

    Names may contain ``/`` to group artifacts (``reports/2024.json``) but every
    segment must be a plain file name: no ``..``, no absolute paths, no backslashes,
    no NUL or control characters, no leading dot.

    Raises:
        InvalidNameError: The name could escape the artifact store or is malformed.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"artifact name must be a non-empty string, got {name!r}")
    if len(name) > _ARTIFACT_MAX_LEN:
        raise InvalidNameError(f"artifact name is longer than {_ARTIFACT_MAX_LEN} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidNameError(f"artifact name {name!r} contains NUL or control characters")
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise InvalidNameError(
            f"artifact name {name!r} must be a relative name like 'report.json' or "
            "'reports/2024.json' (no absolute paths, no backslashes)"
        )
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidNameError(
                f"artifact name {name!r} has an empty, '.' or '..' segment; "
                "names may not escape the artifact store"
            )
        if not _ARTIFACT_SEGMENT.match(segment):
            raise InvalidNameError(
                f"artifact name {name!r}: segment {segment!r} may contain letters, digits, "
                "'_', '-', '.', and spaces, and must not start with '.' or '-'"
            )
    return name
