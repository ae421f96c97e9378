"""Executors: where agent code runs (in-process, subprocess, container)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from py_code_mode.execution.protocol import Executor, PackageEnvironment

if TYPE_CHECKING:
    from py_code_mode.execution.container import ContainerConfig, ContainerExecutor
    from py_code_mode.execution.in_process import InProcessConfig, InProcessExecutor
    from py_code_mode.execution.subprocess import SubprocessConfig, SubprocessExecutor

__all__ = [
    "ContainerConfig",
    "ContainerExecutor",
    "Executor",
    "InProcessConfig",
    "InProcessExecutor",
    "PackageEnvironment",
    "SubprocessConfig",
    "SubprocessExecutor",
]

_LAZY = {
    "InProcessConfig": "py_code_mode.execution.in_process",
    "InProcessExecutor": "py_code_mode.execution.in_process",
    "SubprocessConfig": "py_code_mode.execution.subprocess",
    "SubprocessExecutor": "py_code_mode.execution.subprocess",
    "ContainerConfig": "py_code_mode.execution.container",
    "ContainerExecutor": "py_code_mode.execution.container",
}


def __getattr__(name: str) -> Any:
    # Executors load on first use: importing Session (and the MCP server before its
    # handshake) should not pay for their modules (asyncio streams, the docker SDK).
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'py_code_mode.execution' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
