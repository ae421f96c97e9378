"""``deps.add`` in a ``network="allowlist"`` sandbox installs through the egress proxy.

A simple package index on host loopback serves a wheel built here; sessions reach it
as ``index.test`` (mapped to 127.0.0.1, loopback opened with ``allow_addresses``), so
the test is offline. The jail installs with the host's uv, pointed at the session's
proxy; a container installs inside itself through the worker's forwarder.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode._private import jail
from tests._egress_servers import Served, http_server

from ._container_support import TEST_IMAGE, engine_problem

pytestmark = pytest.mark.slow

NAME = "tinyegress"


def _wheel() -> tuple[str, bytes]:
    """A minimal pure-Python wheel: ``tinyegress.VALUE == 42``."""
    files = {
        f"{NAME}/__init__.py": b"VALUE = 42\n",
        f"{NAME}-1.0.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: 1.0\n".encode()
        ),
        f"{NAME}-1.0.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{NAME}-1.0.dist-info/RECORD,,")
    files[f"{NAME}-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return f"{NAME}-1.0-py3-none-any.whl", buffer.getvalue()


@pytest.fixture(scope="module")
def index() -> Iterator[Served]:
    filename, wheel = _wheel()
    digest = hashlib.sha256(wheel).hexdigest()
    page = f'<html><body><a href="/files/{filename}#sha256={digest}">{filename}</a></body></html>'
    files = {f"/simple/{NAME}/": page.encode(), f"/files/{filename}": wheel}
    with http_server(files) as served:
        yield served


EGRESS: dict[str, Any] = {
    "network": "allowlist",
    "allow": ["index.test"],
    "hosts": {"index.test": "127.0.0.1", "other.test": "127.0.0.1"},
    "allow_addresses": ["127.0.0.1/32"],
}


async def _add_and_import(session: Session) -> Any:
    return await session.run(f"deps.add({NAME!r})\nimport {NAME}\n{NAME}.VALUE")


@pytest.fixture
def index_env(monkeypatch: pytest.MonkeyPatch, index: Served) -> str:
    url = f"http://index.test:{index.port}/simple"
    monkeypatch.setenv("UV_INDEX_URL", url)  # the host's uv (jail installs)
    monkeypatch.setenv("UV_NO_CACHE", "1")
    return url


async def test_deps_add_in_a_jail_installs_through_the_proxy(
    tmp_path: Path, index: Served, index_env: str
) -> None:
    if not jail.probe().usable:
        pytest.skip(jail.probe().detail)
    from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

    executor = SubprocessExecutor(SubprocessConfig(isolation="bwrap", cache_venv=False, **EGRESS))
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        result = await _add_and_import(session)
    assert result.error is None, result.error
    assert result.value == 42
    assert f"index.test:{index.port}" in index.hosts


async def test_deps_add_in_a_jail_from_a_host_outside_the_allowlist_fails_clearly(
    tmp_path: Path, index: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not jail.probe().usable:
        pytest.skip(jail.probe().detail)
    from py_code_mode.execution import SubprocessConfig, SubprocessExecutor

    monkeypatch.setenv("UV_INDEX_URL", f"http://other.test:{index.port}/simple")
    monkeypatch.setenv("UV_NO_CACHE", "1")
    before = list(index.hosts)
    executor = SubprocessExecutor(SubprocessConfig(isolation="bwrap", cache_venv=False, **EGRESS))
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        result = await _add_and_import(session)
    assert result.error is not None
    assert "403" in result.error
    assert "egress refused" in result.stderr
    assert "other.test" in result.stderr
    assert index.hosts == before


async def test_deps_add_in_a_container_installs_through_the_proxy(
    tmp_path: Path, index: Served
) -> None:
    problem = engine_problem()
    if problem is not None:
        pytest.skip(problem)
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    env = {
        "PIP_INDEX_URL": f"http://index.test:{index.port}/simple",
        "PIP_TRUSTED_HOST": "index.test",
        "UV_INDEX_URL": f"http://index.test:{index.port}/simple",
    }
    executor = ContainerExecutor(
        ContainerConfig(image=TEST_IMAGE, env=env, install_timeout=300, **EGRESS)
    )
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        result = await _add_and_import(session)
    assert result.error is None, result.error
    assert result.value == 42
    assert f"index.test:{index.port}" in index.hosts


async def test_agent_code_rewriting_the_proxy_url_file_cannot_route_deps_add_around_the_proxy(
    tmp_path: Path, index: Served
) -> None:
    """The worker writes the forwarder's URL where agent code can rewrite it; ``deps.add``
    reads it in the container, so a rewritten URL must reach nothing past the sandbox:
    here it names the index's host-loopback port directly, which the container's own
    network namespace does not have."""
    problem = engine_problem()
    if problem is not None:
        pytest.skip(problem)
    from py_code_mode.execution import ContainerConfig, ContainerExecutor

    env: dict[str, str | None] = {
        "PIP_INDEX_URL": f"http://index.test:{index.port}/simple",
        "PIP_TRUSTED_HOST": "index.test",
        "UV_INDEX_URL": f"http://index.test:{index.port}/simple",
    }
    before = list(index.hosts)
    executor = ContainerExecutor(
        ContainerConfig(image=TEST_IMAGE, env=env, install_timeout=60, **EGRESS)
    )
    async with Session(storage=FileStorage(tmp_path), executor=executor) as session:
        rewrite = await session.run(
            "import os\n"
            "path = os.environ['PY_CODE_MODE_EGRESS_URL_FILE']\n"
            f"open(path, 'w').write('http://127.0.0.1:{index.port}')\n"
            "open(path).read()"
        )
        assert rewrite.error is None, rewrite.error
        result = await _add_and_import(session)
    assert result.error is not None
    assert "Cannot connect to proxy" in result.error  # the rewritten URL was used
    assert index.hosts == before
