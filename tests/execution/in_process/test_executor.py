"""In-process specifics: output routing, native-code timeouts, deps."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from py_code_mode import Session


@pytest.fixture
def executor_kind() -> str:
    """Pins conftest.py's ``session`` fixture to this executor."""
    return "in-process"


async def test_host_output_is_not_captured_while_agent_code_runs(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = asyncio.create_task(
        session.run("import time\nfor i in range(5):\n    print('agent', i)\n    time.sleep(0.02)")
    )
    for _ in range(5):
        print("host line")
        await asyncio.sleep(0.02)
    result = await agent
    captured = capsys.readouterr().out
    assert "host line" in captured
    assert "agent" not in captured
    assert "host line" not in result.stdout
    assert result.stdout.count("agent") == 5


async def test_a_run_blocked_in_native_code_is_reported_as_not_interruptible(
    session: Session,
) -> None:
    await session.run("kept = 1")
    result = await session.run("import time\ntime.sleep(3)", timeout=0.3)
    assert result.error_type == "TimeoutError"
    assert result.error is not None
    assert "could not be interrupted" in result.error
    after = await session.run("kept + 1")
    assert after.value == 2


async def test_an_interrupted_run_cannot_swallow_the_interrupt_with_except_exception(
    session: Session,
) -> None:
    code = "while True:\n    try:\n        sum(range(1000))\n    except Exception:\n        pass"
    result = await session.run(code, timeout=0.5)
    assert result.error_type == "TimeoutError"
    assert "was interrupted" in (result.error or "")


async def test_errors_in_tracebacks_never_show_library_frames(session: Session) -> None:
    result = await session.run("tools.fail()")
    assert result.error_type == "ToolError"
    assert "py_code_mode" not in (result.error or "")
    assert "site-packages/asyncio" not in (result.error or "")


@pytest.mark.slow
async def test_deps_add_installs_a_real_package_importable_in_the_same_session(
    session: Session,
) -> None:
    package = "six"
    try:
        result = await session.run(f"deps.add({package!r})")
        assert result.is_ok, result.error
        imported = await session.run("import six\nsix.__name__")
        assert imported.value == "six"
        assert await session.list_deps() == ["six"]
        removed = await session.run(f"deps.remove({package!r})")
        assert removed.value is True
        assert await session.list_deps() == []
    finally:
        import subprocess

        from py_code_mode._private.uv import uv_binary

        subprocess.run(
            [uv_binary(), "pip", "uninstall", "--python", sys.executable, package],
            capture_output=True,
            check=False,
            timeout=60,
        )


async def test_a_pil_image_as_last_value_comes_back_as_a_png_artifact(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    async with Session.inprocess(tmp_path) as session:
        result = await session.run("from PIL import Image\nImage.new('RGB', (4, 3), 'red')")
        assert result.is_ok, result.error
        [name] = result.metadata["images"]
        data = await session.load_artifact(name)
    assert isinstance(data, bytes)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert name.endswith(".png")
