"""Building the container executor's image (``py-code-mode image build``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from py_code_mode import ConfigError, FileStorage, Session
from py_code_mode.execution import ContainerConfig, ContainerExecutor
from py_code_mode.execution.container.image import build_image, dockerfile_path

from .._container_support import TEST_IMAGE, pypi_reachable, require_engine

BUILT_TAG = "py-code-mode-worker:test"


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"tag": "Not A Tag"}, "tag"),
        ({"base_image": ""}, "base image"),
        ({"deps": ["--index-url=http://evil"]}, "deps"),
        ({"ca_bundle": Path("/nonexistent/ca.pem")}, "CA bundle"),
    ],
)
def test_bad_build_settings_are_refused_before_building(
    settings: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        build_image(**settings)  # type: ignore[arg-type]


def test_the_shipped_dockerfile_is_found_and_builds_on_python_slim() -> None:
    text = dockerfile_path().read_text()
    assert "ARG PYTHON_IMAGE=python:3.12-slim" in text
    assert "USE_HOST_CA=0" in text
    assert "USER 10001:10001" in text


@pytest.mark.slow
async def test_a_built_image_has_uv_and_baked_deps_for_a_session_without_network(
    tmp_path: Path,
) -> None:
    require_engine()
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from this machine: the build installs uv")
    lines: list[str] = []
    built = build_image(
        BUILT_TAG,
        base_image=TEST_IMAGE,
        deps=["six==1.16.0"],
        ca_bundle=Path(ssl.get_default_verify_paths().openssl_cafile or ""),
        with_worker=True,
        on_progress=lines.append,
    )
    assert built.tag == BUILT_TAG
    assert built.image_id.startswith("sha256:")
    assert any("Step" in line or "built" in line for line in lines)
    config = ContainerConfig(image=BUILT_TAG, deps=("six==1.16.0",))
    async with Session(FileStorage(tmp_path / "data"), ContainerExecutor(config)) as session:
        result = await session.run(
            "import os, shutil, six\n"
            "[six.__version__, shutil.which('uv') is not None, os.getuid(),"
            " os.path.exists('/opt/py-code-mode/py_code_mode_worker/listen.py')]"
        )
        assert result.is_ok, result.error
        assert result.value == ["1.16.0", True, 65534, True]
