"""py-code-mode installs beside PyBotchi and MBX AI, and both sides import and run.

mbxai pins ``typing-inspection<=0.4.0``, which holds mcp at 1.21: the core admits
mcp 1.x, so the resolution succeeds. pybotchi[mcp] does not cap mcp, yet its MCP
client imports ``mcp.server.fastmcp`` (gone in mcp 2): its install line adds
``mcp<2``, with or without py-code-mode. Nothing else holds mcp back, so a plain
install (the one ``uvx --from`` makes for ``claude mcp add``) still gets mcp 2.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.examples._venvs import REPO, build_venv, python312, uv_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PROBE = """
import importlib.metadata as md, sys, tempfile
from py_code_mode import Session
from py_code_mode.integrations import SyncSession
{framework}
with tempfile.TemporaryDirectory() as base:
    with SyncSession(Session.inprocess(base)) as session:
        result = session.run("artifacts.save('a', [1, 2]); sum(artifacts.load('a'))")
        assert result.value == 3, result
print("mcp", md.version("mcp"))
"""


def _compile(python: Path, *requirements: str, tmp_path: Path) -> dict[str, str]:
    source = tmp_path / "requirements.in"
    source.write_text("\n".join([str(REPO), *requirements]) + "\n", encoding="utf-8")
    out = subprocess.run(
        [uv_binary(), "pip", "compile", "--quiet", "--python", str(python), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if out.returncode != 0 and "pypi.org" in out.stderr:
        pytest.skip(f"no package index: {out.stderr[-300:]}")
    assert out.returncode == 0, out.stderr
    pins = {}
    for line in out.stdout.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            pins[name.split("[")[0].lower()] = version
    return pins


def _probe(python: Path, framework: str) -> str:
    out = subprocess.run(
        [str(python), "-c", PROBE.format(framework=framework)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_resolutions_keep_mcp_2_unless_a_framework_holds_it_back(tmp_path: Path) -> None:
    python = python312()
    if python is None:
        pytest.skip("the frameworks need Python 3.12: none found (set PY312 or use pyenv)")
    alone = _compile(python, tmp_path=tmp_path)
    assert alone["mcp"].startswith("2.")
    with_pybotchi = _compile(python, "pybotchi[mcp]==4.1.7", tmp_path=tmp_path)
    assert with_pybotchi["pybotchi"] == "4.1.7"
    assert with_pybotchi["mcp"].startswith("2.")
    with_mbxai = _compile(python, "mbxai==4.2.0", tmp_path=tmp_path)
    assert with_mbxai["mbxai"] == "4.2.0"
    assert with_mbxai["mcp"].startswith("1.")
    assert with_mbxai["typing-inspection"] == "0.4.0"


def test_py_code_mode_and_mbxai_install_together_and_both_run() -> None:
    venv = build_venv("line-mbxai", python312(), "mbxai==4.2.0\n", editable=False)
    out = _probe(venv.python, "from mbxai import OpenRouterClient, ToolClient")
    assert "mcp 1." in out


def test_py_code_mode_and_pybotchi_mcp_install_together_and_both_run() -> None:
    venv = build_venv("line-pybotchi", python312(), "pybotchi[mcp]==4.1.7\nmcp<2\n", editable=False)
    out = _probe(venv.python, "from pybotchi import Action\nfrom pybotchi.mcp import MCPAction")
    assert "mcp 1." in out
    # The MCP server itself needs mcp 2 and says so, naming the way out.
    server = subprocess.run(
        [str(venv.bin / "py-code-mode-mcp"), "--base", str(venv.path / "lib-base")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert server.returncode == 2
    assert "needs the mcp SDK >= 2.3" in server.stderr
    assert "uvx --from py-code-mode py-code-mode-mcp" in server.stderr


def test_the_plain_pybotchi_line_keeps_mcp_2_and_only_pybotchis_mcp_client_needs_mcp_1() -> None:
    venv = build_venv("line-pybotchi-plain", python312(), "pybotchi[mcp]==4.1.7\n", editable=False)
    out = _probe(venv.python, "from pybotchi import Action, Context")
    assert "mcp 2." in out
    # pybotchi's MCP client imports mcp.server.fastmcp, which mcp 2 removed, and
    # pybotchi does not cap mcp: that is why its documented line adds 'mcp<2'.
    client = subprocess.run(
        [str(venv.python), "-c", "import pybotchi.mcp"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert client.returncode != 0
    assert "mcp" in client.stderr
