"""``py-code-mode``: the command-line interface (typer).

Importing this package is cheap; typer and the commands load in :func:`main`.
"""

from __future__ import annotations

__all__ = ["main"]


def main() -> None:
    """Console entry point of ``py-code-mode``."""
    from py_code_mode.cli.app import app  # typer and the commands load only when run

    app()
