from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.tools.cli import CliTool
from py_code_mode.tools.models import load_cli_tool
from py_code_mode.tools.protocol import CallableSpec, ToolAdapter

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"


def make(data: dict[str, Any], **kwargs: Any) -> CliTool:
    return load_cli_tool({"name": "demo", **data}, **kwargs)


def argv_tool(**extra: Any) -> CliTool:
    """A tool that prints, as JSON, the argv it received."""
    return make(
        {
            "command": sys.executable,
            "args": ["-c", PRINT_ARGV],
            "schema": {
                "options": {
                    "silent": {"type": "boolean", "short": "s"},
                    "verbose": {"type": "boolean"},
                    "max-time": {"type": "number"},
                    "count": {"type": "integer", "short": "n"},
                    "request": {"type": "string", "short": "X"},
                    "header": {"type": "array", "short": "H"},
                    "method": {"type": "string", "flag": "--method"},
                },
                "positional": [
                    {"name": "url", "required": True},
                    {"name": "files", "type": "array"},
                ],
            },
            "recipes": {
                "get": {
                    "description": "GET",
                    "preset": {"silent": True, "request": "GET", "header": ["A: 1"]},
                    "params": {"url": {}, "count": {"default": 2}, "header": {}},
                },
            },
            **extra,
        }
    )


def sh_tool(
    script: str, *, positional: list[dict[str, Any]] | None = None, **extra: Any
) -> CliTool:
    return make(
        {
            "command": "sh",
            "args": ["-c", script, "sh"],
            "separator": None,  # sh -c passes "--" on as $1
            "schema": {"positional": positional or []},
            **extra,
        }
    )


async def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while not path.exists() or not path.read_text().strip():
            await asyncio.sleep(0.02)
    return path.read_text().strip()


async def start_call_with_a_child(tmp_path: Path) -> tuple[CliTool, asyncio.Task[Any], int]:
    """Start a call whose shell waits on a ``sleep 60`` child: the tool, the call, the child pid."""
    pidfile = tmp_path / "child.pid"
    tool = sh_tool(
        'sleep 60 & echo $! > "$1"; wait',
        positional=[{"name": "pidfile", "required": True}],
        timeout=60,
    )
    task = asyncio.create_task(tool.call(None, {"pidfile": str(pidfile)}))
    return tool, task, int(await wait_for_file(pidfile))


async def process_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        await asyncio.sleep(0.05)
    return False


# -- argv building -----------------------------------------------------------------


def test_arguments_become_flags_values_and_positionals_in_declared_order() -> None:
    tool = argv_tool()
    argv = tool.build_argv(
        None,
        {
            "files": ["a.txt", "b.txt"],
            "url": "https://example.org",
            "header": ["A: 1", "B: 2"],
            "count": 3,
            "max_time": 1.5,
            "verbose": True,
            "silent": True,
            "method": "PUT",
        },
    )
    # Values stay attached to their flags; positionals come after "--".
    assert argv[3:] == [
        "-s",
        "--verbose",
        "--max-time=1.5",
        "-n3",
        "-HA: 1",
        "-HB: 2",
        "--method=PUT",
        "--",
        "https://example.org",
        "a.txt",
        "b.txt",
    ]
    assert argv[:3] == [sys.executable, "-c", PRINT_ARGV]


def test_false_none_and_empty_arrays_are_omitted() -> None:
    argv = argv_tool().build_argv(
        None, {"url": "u", "silent": False, "verbose": None, "header": [], "files": None}
    )
    assert argv[3:] == ["--", "u"]


def test_positionals_always_come_after_the_separator() -> None:
    tool = argv_tool()
    assert tool.build_argv(None, {"url": "-rf", "silent": True})[3:] == ["-s", "--", "-rf"]
    assert tool.build_argv(None, {"url": "u", "files": ["-x"]})[3:] == ["--", "u", "-x"]


def test_passthrough_positionals_may_carry_options_only_in_a_tool_marked_unsafe() -> None:
    tool = make(
        {
            "command": "git",
            "unsafe_passthrough": True,
            "schema": {
                "positional": [
                    {"name": "subcommand"},
                    {"name": "args", "type": "array", "passthrough": True},
                ]
            },
        }
    )
    argv = tool.build_argv(None, {"subcommand": "log", "args": ["--oneline", "-3"]})
    assert argv == ["git", "log", "--oneline", "-3"]


def test_a_recipe_merges_its_preset_with_the_callers_params() -> None:
    tool = argv_tool()
    assert tool.build_argv("get", {"url": "u"})[3:] == ["-s", "-n2", "-XGET", "-HA: 1", "--", "u"]
    overridden = tool.build_argv("get", {"url": "u", "count": 5, "header": ["B: 2"]})
    assert overridden[3:] == ["-s", "-n5", "-XGET", "-HB: 2", "--", "u"]


def test_a_recipe_refuses_arguments_outside_its_params() -> None:
    with pytest.raises(
        ToolError,
        match=r"recipe 'get': unknown argument\(s\) 'silent'; accepted: url, count, header",
    ):
        argv_tool().build_argv("get", {"url": "u", "silent": False})


def test_a_recipe_needs_its_required_params() -> None:
    with pytest.raises(
        ToolError, match=r"tool 'demo' recipe 'get': missing required argument\(s\) 'url'"
    ):
        argv_tool().build_argv("get", {})
    with pytest.raises(ToolError, match="missing required"):
        argv_tool().build_argv("get", {"url": None})


def test_an_unknown_recipe_lists_the_recipes() -> None:
    with pytest.raises(ToolNotFoundError, match="tool 'demo' has no recipe 'post'; recipes: get"):
        argv_tool().build_argv("post", {})


def test_unknown_arguments_are_named_with_the_accepted_ones() -> None:
    with pytest.raises(ToolError) as info:
        argv_tool().build_argv(None, {"url": "u", "slient": True})
    message = str(info.value)
    assert "tool 'demo': unknown argument(s) 'slient'" in message
    assert (
        "accepted: silent, verbose, max_time, count, request, header, method, url, files" in message
    )
    assert info.value.tool == "demo"


def test_a_missing_required_positional_is_refused() -> None:
    with pytest.raises(ToolError, match=r"tool 'demo': missing required argument\(s\) 'url'"):
        argv_tool().build_argv(None, {"silent": True})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"count": True}, "argument 'count' must be an integer, got bool True"),
        ({"count": 1.0}, "argument 'count' must be an integer, got float 1.0"),
        ({"max_time": "5"}, "argument 'max_time' must be a number, got str '5'"),
        ({"max_time": False}, "argument 'max_time' must be a number"),
        ({"max_time": float("nan")}, "argument 'max_time' must be a finite number"),
        ({"silent": "yes"}, "argument 'silent' must be a boolean"),
        ({"silent": 1}, "argument 'silent' must be a boolean"),
        ({"request": 5}, "argument 'request' must be a string, got int 5"),
        ({"request": "a\x00b"}, "argument 'request' must be a string without NUL"),
        ({"request": "a\ud800b"}, "argument 'request' must be a string without lone surrogates"),
        ({"header": ["X: \udbff"]}, "list of strings or numbers; item 0 is str"),
        ({"header": "A: 1"}, "argument 'header' must be a list of strings or numbers, got str"),
        ({"header": [["x"]]}, "argument 'header' must be a list of strings or numbers; item 0"),
        ({"header": ["ok", True]}, "item 1 is bool True"),
    ],
)
def test_argument_types_are_checked(args: dict[str, Any], expected: str) -> None:
    with pytest.raises(ToolError) as info:
        argv_tool().build_argv(None, {"url": "u", **args})
    assert expected in str(info.value)


def test_integers_are_accepted_as_numbers() -> None:
    assert argv_tool().build_argv(None, {"url": "u", "max_time": 2})[3:5] == ["--max-time=2", "--"]


def test_output_limit_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="output_limit"):
        CliTool(argv_tool().spec, output_limit=0)


# -- description -------------------------------------------------------------------


async def test_callables_describe_the_recipes_and_direct_parameters_the_tool() -> None:
    tool = argv_tool()
    assert isinstance(tool, ToolAdapter)
    assert tool.kind == "cli"
    (get,) = await tool.callables()
    assert isinstance(get, CallableSpec)
    assert get.to_dict() == {
        "name": "get",
        "description": "GET",
        "parameters": {
            "url": {"type": "string", "description": "", "required": True, "default": None},
            "count": {"type": "integer", "description": "", "required": False, "default": 2},
            "header": {"type": "array", "description": "", "required": False, "default": ["A: 1"]},
        },
    }
    direct = {p.name: p for p in tool.direct_parameters()}
    assert direct["max_time"].type == "number"
    assert direct["max_time"].description == "--max-time"
    assert direct["url"].required is True
    assert list(direct) == [
        "silent",
        "verbose",
        "max_time",
        "count",
        "request",
        "header",
        "method",
        "url",
        "files",
    ]


# -- running -----------------------------------------------------------------------


async def test_a_call_returns_the_programs_stdout() -> None:
    out = await argv_tool().call(None, {"url": "-x", "silent": True})
    assert json.loads(out) == ["-s", "--", "-x"]


async def test_a_recipe_call_runs_the_merged_argv() -> None:
    out = await argv_tool().call("get", {"url": "https://example.org"})
    assert json.loads(out) == ["-s", "-n2", "-XGET", "-HA: 1", "--", "https://example.org"]


async def test_echo_output_comes_back_as_text() -> None:
    tool = make(
        {
            "command": "echo",
            "separator": None,  # echo prints "--"
            "schema": {"positional": [{"name": "words", "type": "array"}]},
        }
    )
    assert await tool.call(None, {"words": ["hello", "wörld"]}) == "hello wörld\n"


async def test_invalid_utf8_is_replaced_not_fatal() -> None:
    tool = make({"command": "printf", "args": ["\\377ok"]})
    assert await tool.call(None, {}) == "\ufffdok"


async def test_stdin_is_closed() -> None:
    tool = make(
        {"command": sys.executable, "args": ["-c", "import sys; print(repr(sys.stdin.read()))"]}
    )
    assert await tool.call(None, {}) == "''\n"


async def test_a_non_zero_exit_raises_with_stderr_and_exit_code() -> None:
    tool = sh_tool(
        'echo "partial"; echo "$1" >&2; exit 3',
        positional=[{"name": "message", "required": True}],
    )
    with pytest.raises(ToolError) as info:
        await tool.call(None, {"message": "something broke"})
    assert str(info.value) == "tool 'demo' failed with exit code 3: something broke"
    assert info.value.stderr == "something broke\n"
    assert info.value.tool == "demo"


async def test_a_failure_without_stderr_shows_stdout() -> None:
    with pytest.raises(ToolError, match=r"exit code 2: \(no stderr; stdout:\) usage: demo"):
        await sh_tool("echo 'usage: demo'; exit 2").call(None, {})
    with pytest.raises(ToolError, match=r"exit code 4 \(no output\)"):
        await sh_tool("exit 4").call(None, {})


async def test_long_stderr_is_excerpted_in_the_message_but_kept_in_the_attribute() -> None:
    tool = make(
        {
            "command": sys.executable,
            "args": ["-c", "import sys; sys.stderr.write('e' * 10000 + 'END'); sys.exit(1)"],
        }
    )
    with pytest.raises(ToolError) as info:
        await tool.call(None, {})
    assert str(info.value).endswith("eeeEND")
    assert len(str(info.value)) < 2200
    assert len(info.value.stderr) == 10003


async def test_declared_success_exit_codes_are_not_errors() -> None:
    tool = sh_tool("echo nothing matched; exit 1", success_exit_codes=[0, 1])
    assert await tool.call(None, {}) == "nothing matched\n"


async def test_a_program_killed_by_a_signal_says_so() -> None:
    with pytest.raises(ToolError, match="tool 'demo' was killed by signal SIGTERM"):
        await sh_tool("kill -TERM $$").call(None, {})


async def test_a_missing_command_says_to_install_it() -> None:
    tool = make({"name": "jq", "command": "definitely-not-installed-pcm"})
    with pytest.raises(ToolError) as info:
        await tool.call(None, {})
    assert str(info.value) == (
        "tool 'jq': command 'definitely-not-installed-pcm' not found on PATH; install it"
    )


async def test_a_command_path_that_does_not_exist_or_cannot_run_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="command '/nonexistent/pcm-tool' does not exist"):
        await make({"command": "/nonexistent/pcm-tool"}).call(None, {})
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(ToolError, match="is not executable"):
        await make({"command": str(script)}).call(None, {})
    script.chmod(0o755)
    assert await make({"command": str(script)}).call(None, {}) == "hi\n"


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    tool = sh_tool(
        'sleep 60 & echo $! > "$1"; wait',
        positional=[{"name": "pidfile", "required": True}],
        timeout=1,
    )
    with pytest.raises(ToolError) as info:
        await tool.call(None, {"pidfile": str(pidfile)})
    assert str(info.value) == "tool 'demo' timed out after 1 s"
    child = int(await wait_for_file(pidfile))
    assert await process_gone(child)


async def test_a_recipe_timeout_names_the_recipe() -> None:
    tool = make(
        {
            "command": "sleep",
            "timeout": 0.2,
            "schema": {"positional": [{"name": "seconds"}]},
            "recipes": {"nap": {"preset": {"seconds": "30"}}},
        }
    )
    with pytest.raises(ToolError, match=r"tool 'demo' timed out after 0.2 s \(recipe 'nap'\)"):
        await tool.call("nap", {})


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_a_background_child_holding_the_output_open_does_not_hang_the_call(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    tool = sh_tool(
        'sleep 60 & echo $! > "$1"; echo done',
        positional=[{"name": "pidfile", "required": True}],
        timeout=30,
    )
    assert await tool.call(None, {"pidfile": str(pidfile)}) == "done\n"
    assert await process_gone(int(pidfile.read_text()))


async def test_output_beyond_the_cap_is_drained_and_dropped_with_a_marker() -> None:
    script = (
        "import sys\n"
        "for _ in range(50):\n"
        "    sys.stdout.write('x' * 65536); sys.stderr.write('y' * 65536)\n"
    )
    tool = CliTool(
        make({"command": sys.executable, "args": ["-c", script]}).spec, output_limit=1000
    )
    out = await tool.call(None, {})
    assert out.startswith("x" * 1000)
    assert out[1000:] == (
        f"\n[output truncated: kept the first 1000 bytes, dropped {50 * 65536 - 1000} more]"
    )


async def test_stderr_is_capped_too() -> None:
    script = "import sys; sys.stderr.write('y' * 3_000_000); sys.exit(5)"
    tool = CliTool(make({"command": sys.executable, "args": ["-c", script]}).spec, output_limit=100)
    with pytest.raises(ToolError, match="exit code 5") as info:
        await tool.call(None, {})
    assert info.value.stderr.startswith("y" * 100 + "\n[output truncated")


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_cancelling_a_call_kills_its_process_group(tmp_path: Path) -> None:
    _tool, task, child = await start_call_with_a_child(tmp_path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await process_gone(child)


async def test_cancelling_a_call_while_its_process_starts_kills_it_promptly(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "child.pid"
    tool = sh_tool(
        'sleep 60 & echo $! > "$1"; wait',
        positional=[{"name": "pidfile", "required": True}],
        timeout=60,
    )
    for _ in range(5):
        pidfile.unlink(missing_ok=True)
        task = asyncio.create_task(tool.call(None, {"pidfile": str(pidfile)}))
        await asyncio.sleep(0)  # the spawn has begun, not finished
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
        await asyncio.sleep(0.3)
        if pidfile.exists() and pidfile.read_text().strip():
            assert await process_gone(int(pidfile.read_text()))


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_aclose_kills_running_calls_and_is_idempotent(tmp_path: Path) -> None:
    tool, task, child = await start_call_with_a_child(tmp_path)
    await tool.aclose()
    await tool.aclose()
    with pytest.raises(ToolError, match="killed by signal SIGKILL"):
        await asyncio.wait_for(task, 10)
    assert await process_gone(child)
    assert await sh_tool("echo again").call(None, {}) == "again\n"


async def test_concurrent_calls_do_not_mix_output() -> None:
    tool = argv_tool()
    outs = await asyncio.gather(*(tool.call(None, {"url": f"u{i}"}) for i in range(8)))
    assert [json.loads(o) for o in outs] == [["--", f"u{i}"] for i in range(8)]


async def test_the_host_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCM_TOOL_TEST_VALUE", "from-host")
    assert await sh_tool('echo "[$PCM_TOOL_TEST_VALUE]"').call(None, {}) == "[]\n"


async def test_only_declared_env_reaches_the_tool_and_its_values_are_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PCM_TOOL_SECRET", "s3cret-value-123")
    tool = sh_tool('echo "$TOKEN"; env | sort', env={"TOKEN": "${PCM_TOOL_SECRET}"})
    out = await tool.call(None, {})
    assert "s3cret-value-123" not in out
    assert out.splitlines()[0] == "${PCM_TOOL_SECRET}"
    names = {line.split("=", 1)[0] for line in out.splitlines()[1:]}
    assert names <= {"TOKEN", "PATH", "LANG", "LC_ALL", "PWD", "SHLVL", "_"}


# -- declared-only arguments ---------------------------------------------------------


def declared_tool(root: Path, **extra: Any) -> CliTool:
    """A tool printing its argv and working directory, with one declared directory."""
    return make(
        {
            "command": sys.executable,
            "args": ["-c", "import json, os, sys; print(json.dumps([os.getcwd(), *sys.argv[1:]]))"],
            "paths": [str(root)],
            "schema": {
                "options": {
                    "where": {"type": "string", "cwd": True},
                    "mode": {"type": "string", "choices": ["fast", "slow"]},
                    "label": {"type": "string", "pattern": "[a-z]+"},
                },
                "positional": [
                    {"name": "verb", "subcommand": True, "choices": ["show", "list"]},
                    {"name": "files", "type": "array", "path": True},
                    {"name": "extra", "type": "array", "separator": "--also"},
                ],
            },
            **extra,
        }
    )


def test_choices_and_patterns_refuse_other_values(tmp_path: Path) -> None:
    tool = declared_tool(tmp_path)
    with pytest.raises(ToolError, match="'mode' must be one of fast, slow"):
        tool.build_argv(None, {"mode": "--exec"})
    with pytest.raises(ToolError, match="'label' must match"):
        tool.build_argv(None, {"label": "abc -o x"})
    with pytest.raises(ToolError, match="'verb' must be one of show, list"):
        tool.build_argv(None, {"verb": "-c"})


def test_subcommand_then_options_then_separators_then_positionals(tmp_path: Path) -> None:
    argv = declared_tool(tmp_path).build_argv(
        None, {"verb": "show", "mode": "fast", "files": ["a"], "extra": ["-x"]}
    )
    assert argv[3:] == ["show", "--mode=fast", "--", "a", "--also", "-x"]


async def test_path_arguments_must_resolve_inside_the_declared_paths(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (root / "link").symlink_to(outside)
    tool = declared_tool(root)
    out = json.loads(await tool.call(None, {"files": ["sub", str(root / "sub")]}))
    assert out[0] == str(root)  # the first declared path is the working directory
    # attack: the host root again through /proc/self/root, a link, `..`, absolute paths
    via_proc = f"/proc/self/root{outside}"
    for bad in ("../outside.txt", str(outside), "link", "/", via_proc, "sub/../../outside.txt"):
        with pytest.raises(ToolError, match="outside the directories this tool may use"):
            tool.build_argv(None, {"files": [bad]})


async def test_a_cwd_option_becomes_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    tool = declared_tool(tmp_path)
    out = json.loads(await tool.call(None, {"where": "repo"}))
    assert out == [str(tmp_path / "repo")]
    with pytest.raises(ToolError, match="outside the directories"):
        await tool.call(None, {"where": ".."})


def test_option_values_next_passes_the_value_as_the_following_item() -> None:
    tool = argv_tool(option_values="next")
    assert tool.build_argv(None, {"url": "u", "request": "-o", "max_time": 2})[3:] == [
        "--max-time",
        "2",
        "-X",
        "-o",
        "--",
        "u",
    ]


def test_without_a_separator_a_positional_starting_with_a_dash_is_refused() -> None:
    tool = argv_tool(separator=None)
    assert tool.build_argv(None, {"url": "u"})[3:] == ["u"]
    with pytest.raises(ToolError, match="starts with '-'"):
        tool.build_argv(None, {"url": "--output=/tmp/x"})


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"schema": {"positional": [{"name": "f", "path": True}]}}, "tool-level `paths:`"),
        ({"schema": {"positional": [{"name": "v", "subcommand": True}]}}, "`choices` list"),
        ({"schema": {"options": {"x": {"pattern": "("}}}}, "not a regular expression"),
        ({"allow_addresses": ["example.org"]}, "not an IP address or range"),
        ({"env": {"1BAD": "x"}}, "not a valid variable name"),
        ({"separator": "x y"}, "separator must be"),
    ],
)
def test_bad_declarations_are_load_problems(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        make({"command": "true", **extra})


def test_env_and_paths_expand_from_the_host_and_refuse_unset_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PCM_TOOL_DIR", str(tmp_path))
    tool = make({"command": "true", "paths": ["${PCM_TOOL_DIR}"], "env": {"A": "x"}})
    assert tool.spec.paths == (str(tmp_path.resolve()),)
    with pytest.raises(ConfigError, match="PCM_SURELY_UNSET"):
        make({"command": "true", "env": {"A": "${PCM_SURELY_UNSET}"}})


def test_paths_expand_a_leading_tilde_to_the_host_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tools/README.md documents `paths: [~/projects/repo]`; it must not become ./~/...
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "repo").mkdir()
    tool = make({"command": "true", "paths": ["~/repo"]})
    assert tool.spec.paths == (str((tmp_path / "repo").resolve()),)
