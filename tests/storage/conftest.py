"""The ``storage`` fixture: every contract test runs once per backend in BACKENDS.

Adding a backend is one line in BACKENDS: a factory that, given a *place* and the
pytest request, returns an **opened** backend. Two calls with the same place must
give two instances that share their data (the "reopen" tests rely on it). A backend
that needs a server gets it through ``request.getfixturevalue(...)`` (and can
``pytest.skip`` there when the server is unavailable).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

import pytest

from py_code_mode.storage.file import FileStorage
from py_code_mode.storage.protocol import StorageBackend

from .._redis import redis_backend
from .._redis import redis_url as redis_url


class BackendFactory(Protocol):
    def __call__(self, place: Path, request: pytest.FixtureRequest) -> Awaitable[StorageBackend]:
        """Open a backend on ``place``; same place, same data."""
        ...


async def _file_backend(place: Path, request: pytest.FixtureRequest) -> StorageBackend:
    backend = FileStorage(place)
    await backend.open()
    return backend


BACKENDS: dict[str, BackendFactory] = {
    "file": _file_backend,
    "redis": redis_backend,
}

MakeStorage = Callable[[], Awaitable[StorageBackend]]


@pytest.fixture(params=sorted(BACKENDS))
async def make_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[MakeStorage]:
    """A coroutine function giving a new opened backend on this test's one place."""
    factory = BACKENDS[request.param]
    place = tmp_path / "store"
    opened: list[StorageBackend] = []

    async def make() -> StorageBackend:
        backend = await factory(place, request)
        opened.append(backend)
        return backend

    yield make
    for backend in reversed(opened):
        await backend.close()


@pytest.fixture
async def storage(make_storage: MakeStorage) -> StorageBackend:
    """An opened backend (one per entry of BACKENDS), closed after the test."""
    return await make_storage()
