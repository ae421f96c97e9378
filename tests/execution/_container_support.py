"""Container executor test support: the engine probe, the contract-suite factory, a PyPI probe.

Tests use the local base image that ``.ci/docker.sh`` builds without a registry
(override with ``PY_CODE_MODE_TEST_IMAGE``). They skip, with the reason, only when no
Docker engine is reachable or that image is missing.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from py_code_mode.execution.protocol import Executor

TEST_IMAGE = os.environ.get("PY_CODE_MODE_TEST_IMAGE", "local/python:3.11-bookworm")
TEST_RUNTIME = os.environ.get("PY_CODE_MODE_TEST_RUNTIME") or None
"""The OCI runtime of the container tests: unset for the engine's default (runc), or
``runsc`` to run them under gVisor (``.ci/run`` does so for the contract suite)."""


@functools.cache
def engine_problem() -> str | None:
    """Why container tests cannot run here, or None when they can."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'py-code-mode[container]')"
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return f"no Docker engine is reachable ({exc}); CI starts one with .ci/docker.sh"
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        return f"the test image {TEST_IMAGE} is missing; build it with `bash .ci/docker.sh`"
    finally:
        client.close()
    return None


def require_engine() -> None:
    """Skip the calling test when no engine or image is available."""
    problem = engine_problem()
    if problem is not None:
        pytest.skip(problem)


def pypi_reachable() -> bool:
    """Whether this machine can reach PyPI (the tests that install packages need it)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


def container_executor(tools_path: Path | None, **config: Any) -> Executor:
    """The contract suite's factory: a container executor on the test image."""
    require_engine()
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    settings: dict[str, Any] = {
        "image": TEST_IMAGE,
        "warm_pool": 1,
        "runtime": TEST_RUNTIME,
        **config,
    }
    return ContainerExecutor(ContainerConfig(tools_path=tools_path, **settings))
