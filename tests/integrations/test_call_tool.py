"""call_tool: a model's tool call in, the text to hand back out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from py_code_mode import Session
from py_code_mode.integrations import call_tool


async def test_arguments_may_be_the_json_text_models_send(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        text = await call_tool(session, "run_code", '{"code": "6 * 7"}')
    assert text.startswith("value:\n42")


async def test_mistakes_in_a_call_come_back_as_text_saying_what_is_wrong(tmp_path: Path) -> None:
    async with Session.inprocess(tmp_path) as session:
        assert "missing required argument 'code'" in await call_tool(session, "run_code", {})
        assert "not valid JSON" in await call_tool(session, "run_code", "{code: 1}")
        assert "must be a JSON object" in await call_tool(session, "run_code", "[1]")
        assert "must be a string" in await call_tool(session, "run_code", {"code": 5})
        unknown = await call_tool(session, "rm_rf", {})
        assert "unknown tool 'rm_rf'" in unknown
        assert "run_code" in unknown
        refused = await call_tool(session, "create_workflow", {"name": "class", "source": "x"})
        assert "class" in refused
        # The session still works after every refusal.
        assert (await call_tool(session, "run_code", {"code": "1 + 1"})).startswith("value:\n2")


def test_importing_the_integrations_loads_neither_the_mcp_sdk_nor_a_framework() -> None:
    probe = (
        "import sys, py_code_mode.integrations\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('mcp', 'mcp_types', 'pybotchi', 'mbxai', 'pygents', 'agentproc', 'openai')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
