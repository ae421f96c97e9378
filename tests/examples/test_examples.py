"""Each framework example runs end to end in its own venv against a scripted model.

The model (tests/_model_server.py) calls ``run_code`` with code that saves an
artifact, creates a workflow and calls it; the result goes back to the model,
which answers with the total it read. A second question shows what persists
between turns in each framework: the library always, variables only where one
session spans the conversation.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._model_server import Rule, ScriptedModel
from tests._tcp import free_port
from tests.examples._venvs import EXAMPLES, ExampleVenv, example_venv, python312

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

FIRST = "add up the numbers 1, 2 and 3"
SECOND = "multiply the total by ten"

WORKFLOW = 'def run(numbers: list) -> int:\n    """Add numbers."""\n    return sum(numbers)\n'
CREATE_AND_CALL = f"""\
rows = [1, 2, 3]
artifacts.save("numbers.json", rows, description="numbers to add")
workflows.create("add_numbers", {WORKFLOW!r}, description="Add a list of numbers")
total = workflows.add_numbers(numbers=artifacts.load("numbers.json"))
print(f"total={{total}}")
"""
AGAIN_TIMES_TEN = """\
print(f"kept_variables={'total' in globals()}")
total = workflows.add_numbers(numbers=artifacts.load("numbers.json")) * 10
print(f"total={total}")
"""
RULES = [Rule("add up", CREATE_AND_CALL), Rule("multiply", AGAIN_TIMES_TEN)]
RUN_TIMEOUT = 300


def _model_env(model: ScriptedModel, base: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "MODEL": "scripted-model",
        "CODE_MODE_BASE": str(base),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(name, None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    return env


def _run(
    argv: list[str | Path], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    result = subprocess.run(
        [str(a) for a in argv],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    print(f"{argv[1] if len(argv) > 1 else argv[0]}: {time.monotonic() - started:.1f} s")
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _tool_texts(model: ScriptedModel) -> list[str]:
    """The tool results the model received, in order (each once)."""
    seen: list[str] = []
    for body in model.requests:
        last = body["messages"][-1]
        if last.get("role") == "tool":
            seen.append(str(last.get("content")))
    return seen


def _assert_library(base: Path) -> None:
    assert (base / "workflows" / "add_numbers.py").is_file()
    assert "return sum(numbers)" in (base / "workflows" / "add_numbers.py").read_text()
    assert (base / "artifacts" / "numbers.json").exists() or any(
        p.name.startswith("numbers.json") for p in (base / "artifacts").iterdir()
    )


def _report(venv: ExampleVenv, name: str) -> None:
    state = "cached" if venv.cached else f"built in {venv.build_seconds:.1f} s"
    print(f"{name} venv {state}: {venv.path}")


@pytest.fixture(scope="module")
def py312() -> Path | None:
    return python312()


def _run_agent_script(example: str, script: str, py312: Path | None, base: Path) -> ScriptedModel:
    """Run ``script`` of ``example`` in its venv on both prompts; the model it talked to."""
    venv = example_venv(example, py312)
    _report(venv, example)
    with ScriptedModel(RULES) as model:
        out = _run(
            [venv.python, script, FIRST, SECOND], _model_env(model, base), EXAMPLES / example
        )
    assert out.stdout.splitlines() == ["The total is 6.", "The total is 60."]
    return model


def test_pybotchi_agent_runs_code_over_streamable_http_and_each_start_is_a_new_session(
    py312: Path | None, tmp_path: Path
) -> None:
    venv = example_venv("pybotchi", py312)
    _report(venv, "pybotchi")
    base = tmp_path / "library"
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "py_code_mode.mcp_server",
            "--transport",
            "http",
            "--no-auth",
            "--port",
            str(port),
            "--base",
            str(base),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the MCP server did not listen within 60 s"
                time.sleep(0.1)
        with ScriptedModel(RULES) as model:
            env = _model_env(model, base)
            env["CODE_MODE_URL"] = f"http://127.0.0.1:{port}/mcp"
            env["STREAM"] = "1"
            out = _run([venv.python, "agent.py", FIRST, SECOND], env, EXAMPLES / "pybotchi")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    assert out.stdout.splitlines() == ["The total is 6.", "The total is 60."]
    assert all(body.get("stream") for body in model.requests), "PyBotchi was told to stream"
    offered = {t["function"]["name"] for t in model.requests[0]["tools"]}
    assert "RunCode" in offered  # PyBotchi CamelCases MCP tool names
    tool_texts = _tool_texts(model)
    assert len(tool_texts) == 2
    assert "total=6" in tool_texts[0]
    # Each context.start() opened a new MCP session: the library persisted, variables not.
    assert "kept_variables=False" in tool_texts[1]
    _assert_library(base)


def test_mbxai_tool_client_runs_code_through_a_sync_session_and_keeps_variables(
    py312: Path | None, tmp_path: Path
) -> None:
    base = tmp_path / "library"
    model = _run_agent_script("mbxai", "agent.py", py312, base)
    spec = model.requests[0]["tools"][0]["function"]
    assert spec["name"] == "run_code"
    assert spec["parameters"]["properties"] == {
        "code": {"type": "string", "description": "Python source to run"}
    }
    tool_texts = _tool_texts(model)
    assert "total=6" in tool_texts[0]
    assert "kept_variables=True" in tool_texts[1]
    _assert_library(base)


def test_pygents_agent_streams_the_model_and_runs_code_as_turns_in_one_session(
    py312: Path | None, tmp_path: Path
) -> None:
    base = tmp_path / "library"
    model = _run_agent_script("pygents", "agent.py", py312, base)
    assert all(body.get("stream") for body in model.requests)
    tool_texts = _tool_texts(model)
    assert "total=6" in tool_texts[0]
    assert "kept_variables=True" in tool_texts[1]
    _assert_library(base)


def test_agentproc_turns_are_processes_that_share_history_and_library_but_not_variables(
    tmp_path: Path,
) -> None:
    # agentproc runs on 3.9+; py-code-mode needs 3.11+, which runs these tests.
    venv = example_venv("agentproc", Path(sys.executable).resolve())
    _report(venv, "agentproc")
    base = tmp_path / "library"
    home = tmp_path / "home"
    home.mkdir()
    profile = EXAMPLES / "agentproc" / "profile.yaml"
    with ScriptedModel(RULES) as model:
        env = _model_env(model, base)
        # agentproc keeps conversation history under ~/.agentproc: a private home.
        env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        env.setdefault("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv"))
        env["HOME"] = str(home)
        env["PATH"] = f"{venv.bin}{os.pathsep}{os.environ['PATH']}"
        agentproc = venv.bin / "agentproc"
        first = _run([agentproc, "-p", profile, "--prompt", FIRST, "--quiet"], env, tmp_path)
        session = next(
            line.split(":", 2)[2]
            for line in first.stderr.splitlines()
            if line.startswith("agentproc:session:")
        )
        second = _run(
            [agentproc, "-p", profile, "--prompt", SECOND, "--session", session, "--quiet"],
            env,
            tmp_path,
        )
    assert first.stdout.strip() == "The total is 6."
    assert second.stdout.strip() == "The total is 60."
    tool_texts = _tool_texts(model)
    assert "total=6" in tool_texts[0]
    assert "kept_variables=False" in tool_texts[1]  # a new process per turn
    # The second turn's process was handed the first turn's conversation.
    second_turn = [m.get("content") for m in model.requests[2]["messages"]]
    assert "The total is 6." in second_turn
    _assert_library(base)


def test_pybotchi_with_the_session_action_keeps_variables_across_context_starts(
    py312: Path | None, tmp_path: Path
) -> None:
    base = tmp_path / "library"
    model = _run_agent_script("pybotchi", "agent_session.py", py312, base)
    assert "RunCode" in {t["function"]["name"] for t in model.requests[0]["tools"]}
    tool_texts = _tool_texts(model)
    assert "total=6" in tool_texts[0]
    assert "kept_variables=True" in tool_texts[1]  # one Session spans both starts
    _assert_library(base)
