"""The execution package: public names, loaded on first use."""

from __future__ import annotations

import ast
import subprocess
import sys

import py_code_mode.execution as execution


def test_import_py_code_mode_loads_no_executor_nor_pydantic_nor_docker() -> None:
    code = (
        "import sys, py_code_mode\n"
        "print(sorted(m for m in sys.modules if m.startswith('py_code_mode.execution.')"
        " or m.split('.')[0] in ('pydantic', 'docker', 'yaml')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(ast.literal_eval(out.stdout.strip()))
    assert loaded <= {"py_code_mode.execution.protocol"}, loaded


def test_every_public_name_resolves_to_its_executor_package() -> None:
    for name in execution.__all__:
        value = getattr(execution, name)
        assert value.__name__ == name
    assert execution.ContainerConfig.__module__ == "py_code_mode.execution.container.config"
    assert execution.SubprocessExecutor.__module__ == "py_code_mode.execution.subprocess.executor"
    assert execution.InProcessConfig.__module__ == "py_code_mode.execution.in_process.config"
