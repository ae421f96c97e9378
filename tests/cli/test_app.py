"""The py-code-mode command line, driven in-process with typer's runner and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from py_code_mode import __version__
from py_code_mode.cli.app import app
from py_code_mode.execution.container.image import build_failure_hint
from py_code_mode.mcp_server.options import executor_available
from tests.search.eval_set import local_model_dir

DOUBLE = textwrap.dedent(
    '''
    def run(n: int) -> int:
        """Double a number."""
        return n * 2
    '''
)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose default library is a fresh temporary directory."""
    monkeypatch.setenv("PY_CODE_MODE_BASE", str(tmp_path / "library"))
    return CliRunner()


def test_version_prints_the_package_version(cli: CliRunner) -> None:
    result = cli.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == __version__


def test_help_lists_the_commands(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("mcp", "run", "tools", "workflows", "artifacts", "deps", "doctor", "version"):
        assert command in result.stdout


def test_run_prints_output_then_the_value(cli: CliRunner) -> None:
    result = cli.invoke(
        app, ["run", "--executor", "in-process", "-c", "x = 6\nprint('working')\nx * 7"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "working\n42\n"


@pytest.mark.skipif(
    not executor_available("subprocess"), reason="the subprocess executor is not installed"
)
def test_run_uses_a_separate_worker_process_by_default(cli: CliRunner) -> None:
    result = cli.invoke(app, ["run", "-c", "import os\nos.getpid()"])
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) != os.getpid()


def test_run_prints_what_the_code_wrote_to_stderr_on_stderr(cli: CliRunner) -> None:
    code = "import sys\nprint('out')\nprint('warned', file=sys.stderr)"
    result = cli.invoke(app, ["run", "--executor", "in-process", "-c", code])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "out\n"
    assert result.stderr == "warned\n"


def test_run_exits_non_zero_with_the_traceback_on_stderr(cli: CliRunner) -> None:
    result = cli.invoke(app, ["run", "--executor", "in-process", "-c", "print('a')\n{}['k']"])
    assert result.exit_code == 1
    assert result.stdout == "a\n"
    assert "KeyError" in result.stderr


def test_run_reads_a_file_or_stdin(cli: CliRunner, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("sum(range(5))\n")
    from_file = cli.invoke(app, ["run", "--executor", "in-process", str(script)])
    from_stdin = cli.invoke(app, ["run", "--executor", "in-process", "-"], input="'piped'")
    assert from_file.stdout.strip() == "10"
    assert from_stdin.stdout.strip() == "piped"


def test_run_json_gives_the_whole_result(cli: CliRunner) -> None:
    result = cli.invoke(app, ["run", "--executor", "in-process", "--json", "-c", "[1, 2]"])
    data = json.loads(result.stdout)
    assert data["value"] == [1, 2]
    assert data["is_ok"] is True


def test_run_rejects_missing_or_conflicting_input(cli: CliRunner, tmp_path: Path) -> None:
    both = cli.invoke(app, ["run", "-c", "1", str(tmp_path / "x.py")])
    missing = cli.invoke(app, ["run", "--executor", "in-process", str(tmp_path / "absent.py")])
    bad_executor = cli.invoke(app, ["run", "--executor", "cloud", "-c", "1"])
    assert both.exit_code == 2
    assert missing.exit_code == 2
    assert "cannot read" in missing.stderr
    assert bad_executor.exit_code == 2
    assert "--executor" in bad_executor.stderr


def test_workflows_can_be_added_listed_searched_shown_and_removed(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "double.py"
    source.write_text(DOUBLE)
    added = cli.invoke(app, ["workflows", "add", "double", str(source)])
    listed = cli.invoke(app, ["workflows", "list"])
    listed_json = cli.invoke(app, ["workflows", "list", "--json"])
    found = cli.invoke(app, ["workflows", "search", "double a number"])
    shown = cli.invoke(app, ["workflows", "show", "double"])
    used = cli.invoke(app, ["run", "--executor", "in-process", "-c", "workflows.double(n=4)"])
    removed = cli.invoke(app, ["workflows", "rm", "double"])
    again = cli.invoke(app, ["workflows", "rm", "double"])
    assert added.exit_code == 0, added.stderr
    assert "double(n: int)" in added.stdout
    assert "- double(n: int) - Double a number." in listed.stdout
    assert json.loads(listed_json.stdout)[0]["name"] == "double"
    assert "double" in found.stdout
    assert "return n * 2" in shown.stdout
    assert used.stdout.strip() == "8"
    assert removed.exit_code == 0
    assert again.exit_code == 1
    assert "no workflow named 'double'" in again.stderr


def test_an_invalid_workflow_is_refused_with_the_reason(cli: CliRunner) -> None:
    result = cli.invoke(app, ["workflows", "add", "broken", "-"], input="def run(:\n")
    shown = cli.invoke(app, ["workflows", "show", "missing"])
    assert result.exit_code == 1
    assert "broken" in result.stderr or "syntax" in result.stderr.lower()
    assert shown.exit_code == 1


def test_artifacts_round_trip_text_json_and_bytes(cli: CliRunner, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xffdata")
    put_text = cli.invoke(app, ["artifacts", "put", "note.txt", "-", "-d", "a note"], input="hi")
    put_json = cli.invoke(app, ["artifacts", "put", "d.json", "--json"], input='{"a": [1]}')
    put_blob = cli.invoke(app, ["artifacts", "put", "blob.bin", str(blob), "--binary"])
    listed = cli.invoke(app, ["artifacts", "list"])
    text = cli.invoke(app, ["artifacts", "get", "note.txt"])
    data = cli.invoke(app, ["artifacts", "get", "d.json"])
    out = tmp_path / "copy.bin"
    copied = cli.invoke(app, ["artifacts", "get", "blob.bin", "-o", str(out)])
    loaded = cli.invoke(
        app, ["run", "--executor", "in-process", "-c", "artifacts.load('d.json')['a']"]
    )
    removed = cli.invoke(app, ["artifacts", "rm", "note.txt"])
    missing = cli.invoke(app, ["artifacts", "get", "note.txt"])
    for result in (put_text, put_json, put_blob, copied, removed):
        assert result.exit_code == 0, result.stderr
    assert "note.txt (str, 2 bytes) - a note" in listed.stdout
    assert text.stdout == "hi"
    assert json.loads(data.stdout) == {"a": [1]}
    assert out.read_bytes() == b"\x00\xffdata"
    assert loaded.stdout.strip() == "[1]"
    assert missing.exit_code == 1


def test_artifact_input_is_validated(cli: CliRunner) -> None:
    bad_json = cli.invoke(app, ["artifacts", "put", "x.json", "--json"], input="{nope")
    not_text = cli.invoke(app, ["artifacts", "put", "x.txt"], input=b"\xff\xfe")
    assert bad_json.exit_code == 2
    assert "not valid JSON" in bad_json.stderr
    assert not_text.exit_code == 2
    assert "--binary" in not_text.stderr


def test_tools_list_shows_the_tools_of_the_library(
    cli: CliRunner, tmp_path: Path, tools_dir: Path
) -> None:
    result = cli.invoke(app, ["tools", "list", "--base", str(tmp_path)])
    as_json = cli.invoke(app, ["tools", "list", "--base", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert "tools.greet.hello" in result.stdout
    assert [t["name"] for t in json.loads(as_json.stdout)] == ["fail", "greet"]


def test_deps_list_is_empty_at_first_and_invalid_specs_are_refused(cli: CliRunner) -> None:
    listed = cli.invoke(app, ["deps", "list"])
    bad = cli.invoke(app, ["deps", "add", "--executor", "in-process", "pkg; rm -rf /"])
    not_listed = cli.invoke(app, ["deps", "rm", "--executor", "in-process", "never-added"])
    assert listed.exit_code == 0
    assert listed.stdout == ""
    assert bad.exit_code == 1
    assert "pkg; rm -rf /" in bad.stderr
    assert not_listed.exit_code == 1
    assert "not in the deps list" in not_listed.stderr


def test_listing_commands_do_not_install_listed_packages(cli: CliRunner, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "requirements.txt").write_text("package-that-does-not-exist-xyz==1.0\n")
    listed = cli.invoke(app, ["deps", "list"])
    workflows = cli.invoke(app, ["workflows", "list"])
    assert listed.stdout.strip() == "package-that-does-not-exist-xyz==1.0"
    assert workflows.exit_code == 0, workflows.stderr


def test_doctor_reports_every_check_with_fixes_and_does_not_hang(
    cli: CliRunner, tmp_path: Path
) -> None:
    result = cli.invoke(app, ["doctor", "--redis", "redis://127.0.0.1:1/0"])
    for name in ("python:", "uv:", "docker:", "redis:", "embeddings:", "library:"):
        assert name in result.stdout
    assert "[FAIL] redis" in result.stdout
    assert "fix: start Redis" in result.stdout
    assert result.exit_code == 1


def test_doctor_loads_the_embedding_model_or_says_why_not_and_how_to_fix_it(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "model"
    empty.mkdir()
    monkeypatch.setenv("PY_CODE_MODE_EMBEDDING_MODEL", str(empty))
    broken = cli.invoke(app, ["doctor"])
    assert "[warn] embeddings" in broken.stdout
    assert "cannot be loaded" in broken.stdout
    model = local_model_dir()
    if model is None:
        pytest.skip("the offline test model is not available")
    monkeypatch.setenv("PY_CODE_MODE_EMBEDDING_MODEL", str(model))
    ready = cli.invoke(app, ["doctor"])
    assert "[ok  ] embeddings: fastembed" in ready.stdout
    assert f"model {model} loaded" in ready.stdout


def test_doctor_counts_broken_tool_files_as_problems(cli: CliRunner, tmp_path: Path) -> None:
    tools = tmp_path / "lib" / "tools"
    tools.mkdir(parents=True)
    (tools / "bad.yaml").write_text("name: bad\ncommand: echo\nbogus: 1\n")
    (tools / "good.yaml").write_text("name: good\ncommand: echo\ntags: [x]\n")
    result = cli.invoke(app, ["doctor", "--base", str(tmp_path / "lib")])
    assert "[FAIL] library" in result.stdout
    assert "1 tool(s) loaded; 1 tool file(s) failed to load" in result.stdout
    assert "bad.yaml: bogus" in result.stdout
    assert result.exit_code == 1


def test_doctor_says_whether_tools_and_stdio_mcp_servers_run_jailed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from py_code_mode._private import jail
    from py_code_mode.cli.doctor import check_jail

    if not jail.probe().usable:
        pytest.skip(jail.probe().detail)
    monkeypatch.delenv("PY_CODE_MODE_TOOL_JAIL", raising=False)
    jailed = check_jail()
    assert jailed.status == "ok"
    assert "CLI tool calls and stdio MCP servers run jailed" in jailed.detail
    monkeypatch.setenv("PY_CODE_MODE_TOOL_JAIL", "off")
    off = check_jail()
    assert off.status == "warn"
    assert "stdio MCP servers run UNJAILED (turned off by PY_CODE_MODE_TOOL_JAIL)" in off.detail


def test_doctor_checks_the_container_image_it_was_given(cli: CliRunner) -> None:
    pytest.importorskip("docker")
    result = cli.invoke(app, ["doctor", "--image", "no-such-image-pcm:never"])
    if "[ok  ] docker" not in result.stdout:
        pytest.skip("no Docker engine is reachable")
    assert "[warn] container: image no-such-image-pcm:never is not in the engine" in result.stdout
    assert "--ca-bundle" in result.stdout


def test_an_image_build_failure_behind_a_tls_proxy_names_the_ca_bundle_option() -> None:
    output = (
        "pip install ... SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED]"
    )
    assert "--ca-bundle" in build_failure_hint(output)
    assert build_failure_hint("The command '/bin/sh -c true' returned a non-zero code: 1") == ""


def _console(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"console script {name} is not installed in this environment")
    return str(path)


def test_mcp_subcommand_shows_the_server_flags() -> None:
    result = subprocess.run(
        [_console("py-code-mode"), "mcp", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "usage: py-code-mode mcp" in result.stdout
    for flag in ("--base", "--redis", "--executor", "--no-runtime-deps", "--transport"):
        assert flag in result.stdout


def test_the_console_scripts_run(tmp_path: Path) -> None:
    env = {**os.environ, "PY_CODE_MODE_BASE": str(tmp_path)}
    ran = subprocess.run(
        [_console("py-code-mode"), "run", "--executor", "in-process", "-c", "'ok'"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    server_help = subprocess.run(
        [_console("py-code-mode-mcp"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "ok"
    assert "usage: py-code-mode-mcp" in server_help.stdout


async def test_the_mcp_subcommand_serves_over_stdio(tmp_path: Path) -> None:
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=_console("py-code-mode"),
        args=["mcp", "--base", str(tmp_path), "--executor", "in-process"],
        env=dict(os.environ),
    )
    with anyio.fail_after(60):
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            await session.call_tool("run_code", {"code": "v = 20"})
            result = await session.call_tool("run_code", {"code": "v + 1"})
    assert (result.structured_content or {})["value"] == 21
