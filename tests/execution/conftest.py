"""The executor contract suite's fixtures: one ``session`` per executor kind.

Adding an executor to the contract suite is one entry in ``EXECUTORS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode.execution import InProcessConfig, InProcessExecutor
from py_code_mode.execution.protocol import Executor

from ._container_support import container_executor


def _in_process(tools_path: Path | None, **config: Any) -> Executor:
    return InProcessExecutor(InProcessConfig(tools_path=tools_path, **config))


def _subprocess(tools_path: Path | None, **config: Any) -> Executor:
    from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

    return SubprocessExecutor(SubprocessConfig(tools_path=tools_path, **config))


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "in-process": _in_process,
    "subprocess": _subprocess,
    "container": container_executor,  # skips where no Docker engine or test image is found
}


@pytest.fixture(params=sorted(EXECUTORS))
def executor_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_session(executor_kind: str, tmp_path: Path, tools_dir: Path) -> Callable[..., Session]:
    """Build (not start) a session of the current executor kind on a temp FileStorage."""

    def make(**config: Any) -> Session:
        storage = FileStorage(tmp_path / "data")
        return Session(storage=storage, executor=EXECUTORS[executor_kind](tools_dir, **config))

    return make


@pytest.fixture
async def session(make_session: Callable[..., Session]) -> AsyncIterator[Session]:
    async with make_session() as started:
        yield started
