"""The largest piece of code one run accepts.

Huge code strings are never legitimate agent output, and compiling one costs the
worker seconds and memory before it fails anyway (12 MB of source ran 20 s into
a MemoryError). A run is refused up front instead, with a message naming the
limit and the setting. One constant and one environment variable, so a later
quota setting can take it over.
"""

from __future__ import annotations

import os
from typing import Final

from py_code_mode.result import ExecutionResult

__all__ = ["DEFAULT_MAX_CODE_CHARS", "MAX_CODE_ENV", "check_code_size", "max_code_chars"]

DEFAULT_MAX_CODE_CHARS: Final = 4 * 1024 * 1024
MAX_CODE_ENV: Final = "PY_CODE_MODE_MAX_CODE_CHARS"


def max_code_chars() -> int:
    """The limit in characters: ``PY_CODE_MODE_MAX_CODE_CHARS`` or the default (4 Mi)."""
    raw = os.environ.get(MAX_CODE_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_MAX_CODE_CHARS


def check_code_size(code: str) -> ExecutionResult | None:
    """A failed result when ``code`` is over the limit; None when it may run."""
    limit = max_code_chars()
    if len(code) <= limit:
        return None
    return ExecutionResult.failure(
        f"CodeTooLargeError: the code is {len(code):,} characters, over the limit of "
        f"{limit:,} characters per run. Split the work into smaller runs (save data with "
        f"artifacts), or raise the limit with the environment variable {MAX_CODE_ENV}.",
        "CodeTooLargeError",
    )
