"""Executors: where agent code runs (in-process, subprocess, container).

Each executor is a package holding its executor and its ``config.py``; what the two
isolated executors share lives in ``_isolated``. The executors are imported on first
use, so ``import py_code_mode`` loads none of them (nor pydantic or the docker SDK).
"""

from __future__ import annotations

import importlib
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
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'py_code_mode.execution' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
