from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.search.ranker import LexicalRanker
from py_code_mode.tools.models import load_cli_tool
from py_code_mode.tools.protocol import CallableSpec, ToolLoadProblem
from py_code_mode.tools.registry import ToolRegistry, tool_search_document
from tests._shipped_tools import REPO_TOOLS, shipped_tools

ECHO = """\
name: echo
description: Print words
command: echo
separator: null
schema:
  positional:
    - {name: words, type: array, description: Words to print}
recipes:
  hello:
    description: Say hello to someone
    preset: {words: [hello]}
    params:
      words: {}
"""

WC = """\
name: word_count
description: Count lines, words and bytes of files
command: wc
schema:
  options:
    lines: {type: boolean, short: l, description: Count lines}
  positional:
    - {name: files, type: array, required: true}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def messages(registry: ToolRegistry) -> dict[str, str]:
    return {Path(p.path).name: p.message for p in registry.problems}


async def search(registry: ToolRegistry, query: str, limit: int = 10) -> list[dict[str, Any]]:
    """Rank the tools on their search documents, as the host's ``tools.search`` does."""
    entries = {entry["name"]: entry for entry in await registry.list()}
    documents = [tool_search_document(entry) for entry in entries.values()]
    hits = await LexicalRanker().rank(query, documents, limit=limit)
    return [{**entries[hit.id], "score": hit.score, "why": hit.why} for hit in hits]


@pytest.fixture
def tools_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tools"
    folder.mkdir()
    write(folder, "echo.yaml", ECHO)
    write(folder, "wc.yml", WC)
    return folder


# -- loading -------------------------------------------------------------------------


async def test_no_path_or_a_missing_folder_gives_an_empty_registry(tmp_path: Path) -> None:
    for path in (None, tmp_path / "absent", str(tmp_path / "absent")):
        registry = await ToolRegistry.from_directory(path)
        assert registry.names() == []
        assert registry.problems == []
        assert await registry.list() == []


async def test_a_file_instead_of_a_folder_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "tools.yaml", ECHO)
    with pytest.raises(ConfigError, match="is a file; expected a folder"):
        await ToolRegistry.from_directory(path)


async def test_yaml_and_yml_files_load_and_other_files_are_ignored(tools_dir: Path) -> None:
    write(tools_dir, "notes.txt", "not a tool")
    write(tools_dir, ".hidden.yaml", "garbage: [")
    (tools_dir / "sub").mkdir()
    write(tools_dir / "sub", "nested.yaml", ECHO.replace("name: echo", "name: nested"))
    registry = await ToolRegistry.from_directory(tools_dir)
    assert registry.names() == ["echo", "word_count"]
    assert registry.problems == []


async def test_list_describes_each_tool_its_recipes_and_its_direct_call(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    echo, wc = await registry.list()
    assert echo == {
        "name": "echo",
        "description": "Print words",
        "kind": "cli",
        "callables": [
            {
                "name": "hello",
                "description": "Say hello to someone",
                "parameters": {
                    "words": {
                        "type": "array",
                        "description": "Words to print",
                        "required": False,
                        "default": ["hello"],
                    }
                },
            }
        ],
        "parameters": {
            "words": {
                "type": "array",
                "description": "Words to print",
                "required": False,
                "default": None,
            }
        },
    }
    assert wc["name"] == "word_count"
    assert wc["callables"] == []
    assert wc["parameters"]["lines"]["description"] == "Count lines (-l)"
    assert wc["parameters"]["files"]["required"] is True
    json.dumps([echo, wc])  # plain JSON data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: bad\ncommand: x\nschema:\n  options:\n    silent: {type: bool}\n",
            "schema.options.silent.type: Input should be 'boolean', 'string', 'integer', "
            "'number' or 'array'",
        ),
        (
            "name: bad\ncommand: x\ndescripton: typo\n",
            "descripton: Extra inputs are not permitted",
        ),
        ("name: bad\ndescription: no command\n", "command: Field required"),
        (
            "name: bad\ncommand: x\nschema:\n  options: {a: [1, 2}\n",
            "invalid YAML at line 4, column 21: did not find expected ',' or ']'",
        ),
        ("- name: bad\n- command: x\n", "the top level is a list, expected a mapping"),
        ("just a string\n", "the top level is a str, expected a mapping"),
        ("", "file is empty"),
        ("# only a comment\n", "file is empty"),
        (
            "name: bad\ntype: ftp\ncommand: x\n",
            "type: unknown tool type 'ftp'; expected one of: cli",
        ),
        ("name: bad-name\ncommand: x\n", "name: 'bad-name' is not a valid tool name"),
        ("name: a\ncommand: x\n---\nname: b\ncommand: y\n", "invalid YAML at line 3"),
    ],
)
async def test_a_broken_file_is_a_problem_and_the_others_still_load(
    tools_dir: Path, text: str, expected: str
) -> None:
    write(tools_dir, "bad.yaml", text)
    registry = await ToolRegistry.from_directory(tools_dir)
    assert registry.names() == ["echo", "word_count"]
    (problem,) = registry.problems
    assert isinstance(problem, ToolLoadProblem)
    assert problem.path == str(tools_dir / "bad.yaml")
    assert expected in problem.message
    assert str(problem).startswith(f"{tools_dir / 'bad.yaml'}: ")


async def test_a_file_that_is_not_utf8_is_a_problem(tools_dir: Path) -> None:
    (tools_dir / "bin.yaml").write_bytes(b"name: \xff\xfe\n")
    registry = await ToolRegistry.from_directory(tools_dir)
    assert "not UTF-8 text" in messages(registry)["bin.yaml"]


async def test_a_duplicate_name_makes_the_later_file_a_problem(tools_dir: Path) -> None:
    write(tools_dir, "zz_echo.yaml", ECHO.replace("Print words", "Another echo"))
    registry = await ToolRegistry.from_directory(tools_dir)
    assert registry.get("echo").description == "Print words"
    assert messages(registry) == {
        "zz_echo.yaml": f"name: tool 'echo' is already defined in {tools_dir / 'echo.yaml'}; "
        "tool names must be unique"
    }


async def test_every_broken_file_is_reported_and_logged(
    tools_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tools_dir, "a.yaml", "name: a\n")
    write(tools_dir, "b.yaml", "[")
    with caplog.at_level(logging.WARNING, logger="py_code_mode.tools.registry"):
        registry = await ToolRegistry.from_directory(tools_dir)
    assert sorted(messages(registry)) == ["a.yaml", "b.yaml"]
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 2
    assert any("a.yaml: command: Field required" in m for m in logged)


def test_the_constructor_refuses_two_tools_with_one_name() -> None:
    tool = load_cli_tool({"name": "x", "command": "echo"})
    with pytest.raises(ConfigError, match="two tools are named 'x'"):
        ToolRegistry([tool, load_cli_tool({"name": "x", "command": "true"})])


# -- lookup and calls ----------------------------------------------------------------


async def test_get_an_unknown_tool_lists_the_available_ones(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    with pytest.raises(
        ToolNotFoundError, match="no tool named 'curl'; available: echo, word_count"
    ):
        registry.get("curl")
    with pytest.raises(ToolNotFoundError, match="available: none"):
        ToolRegistry().get("curl")


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_call_routes_to_the_tool_and_its_recipes(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    assert await registry.call("echo", None, {"words": ["a", "b"]}) == "a b\n"
    assert await registry.call("echo", "hello", {}) == "hello\n"
    assert await registry.call("echo", "hello", {"words": ["hi", "you"]}) == "hi you\n"
    target = write(tools_dir.parent, "three.txt", "1\n2\n3\n")
    out = await registry.call("word_count", None, {"lines": True, "files": [str(target)]})
    assert out.split()[0] == "3"
    with pytest.raises(ToolNotFoundError, match="has no recipe 'bye'"):
        await registry.call("echo", "bye", {})
    with pytest.raises(ToolError, match="missing required argument"):
        await registry.call("word_count", None, {})
    await registry.aclose()
    await registry.aclose()


class _BrokenAdapter:
    name = "broken"
    description = "A server that is down"
    kind = "mcp"

    async def callables(self) -> list[CallableSpec]:
        raise ToolError("cannot connect to the server", tool="broken")

    async def call(self, callable_name: str | None, args: Mapping[str, Any]) -> Any:
        raise ToolError("down", tool="broken")

    async def aclose(self) -> None:
        raise OSError("already gone")


async def test_a_tool_that_cannot_list_its_callables_is_still_listed() -> None:
    registry = ToolRegistry([_BrokenAdapter()])
    (entry,) = await registry.list()
    assert entry == {
        "name": "broken",
        "description": "A server that is down",
        "kind": "mcp",
        "callables": [],
        "error": "cannot connect to the server",
    }
    await registry.aclose()  # a failing close is logged, not raised


# -- search --------------------------------------------------------------------------


async def test_search_ranks_matching_tools_with_score_and_why(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    hits = await search(registry, "count lines")
    assert [h["name"] for h in hits] == ["word_count"]
    assert hits[0]["score"] == 1.0
    assert "count (name, description, parameters)" in hits[0]["why"]
    assert hits[0]["callables"] == []
    assert "parameters" in hits[0]


async def test_search_finds_recipes_and_puts_an_exact_name_first(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    hits = await search(registry, "hello")
    assert [h["name"] for h in hits] == ["echo"]
    assert "hello (callables, description)" in hits[0]["why"]
    exact = await search(registry, "Word-Count")
    assert exact[0]["name"] == "word_count"
    assert exact[0]["why"].startswith("exact name match")


async def test_search_returns_only_matches_up_to_the_limit(tools_dir: Path) -> None:
    registry = await ToolRegistry.from_directory(tools_dir)
    assert await search(registry, "kubernetes") == []
    assert len(await search(registry, "words", limit=1)) == 1
    with pytest.raises(ConfigError, match="limit"):
        await search(registry, "words", limit=0)


async def test_search_ties_are_ordered_by_name(tmp_path: Path) -> None:
    for name in ("zeta", "alpha", "mid"):
        write(tmp_path, f"{name}.yaml", f"name: {name}\ndescription: same text\ncommand: echo\n")
    registry = await ToolRegistry.from_directory(tmp_path)
    assert [h["name"] for h in await search(registry, "text")] == ["alpha", "mid", "zeta"]


# -- cheap imports -------------------------------------------------------------------


def test_the_cli_adapter_and_lexical_modules_do_not_import_pydantic_or_yaml() -> None:
    code = (
        "import sys\n"
        "import py_code_mode.tools.cli, py_code_mode.search.lexical\n"
        "print(sorted(m for m in ('pydantic', 'yaml') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


# -- the example tools of the repository ---------------------------------------------


@pytest.fixture
async def repo_tools(tmp_path: Path) -> ToolRegistry:
    """The example tools, with ``tmp_path`` as their declared directory and loopback open."""
    folder = tmp_path.parent / f"{tmp_path.name}-tools"
    return await ToolRegistry.from_directory(shipped_tools(folder, tmp_path, allow_loopback=True))


async def test_the_example_tools_load_without_problems(repo_tools: ToolRegistry) -> None:
    assert repo_tools.problems == []
    assert {"curl", "git", "jq", "grep"} <= set(repo_tools.names())
    for entry in await repo_tools.list():
        assert entry["description"]
        assert entry["callables"], entry["name"]
        assert all(c["description"] for c in entry["callables"])


async def test_git_reads_a_declared_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    write(repo, "a.txt", "one\n")
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
        "PATH": os.environ["PATH"],
    }
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "first"], check=True, env=env)
    registry = await ToolRegistry.from_directory(shipped_tools(tmp_path / "tools", repo))
    try:
        assert "first" in await registry.call("git", "log", {"repo": str(repo)})
        assert "a.txt" in await registry.call("git", "show", {"repo": str(repo)})
        assert "## " in await registry.call("git", "status", {"repo": str(repo)})
        with pytest.raises(ToolError, match="must be one of"):
            await registry.call("git", None, {"subcommand": "init"})
        with pytest.raises(ToolError, match="outside the directories"):
            await registry.call("git", "log", {"repo": str(tmp_path)})
    finally:
        await registry.aclose()


async def test_jq_queries_json_text_and_files(tmp_path: Path) -> None:
    registry = await ToolRegistry.from_directory(shipped_tools(tmp_path / "tools", tmp_path))
    data = json.dumps({"items": [{"name": "a"}, {"name": "b"}]})
    out = await registry.call(
        "jq", "query", {"filter": "$ARGS.positional[0].items | map(.name)", "json": [data]}
    )
    assert json.loads(out) == ["a", "b"]
    path = write(tmp_path, "d.json", data)
    raw = await registry.call(
        "jq", "files", {"filter": ".items[].name", "files": [str(path)], "raw_output": True}
    )
    assert raw == "a\nb\n"
    with pytest.raises(ToolError, match="tool 'jq' recipe 'query' failed with exit code"):
        await registry.call("jq", "query", {"filter": ".[", "json": ["{}"]})
    await registry.aclose()


async def test_a_missing_jq_is_reported_clearly_and_does_not_stop_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registry = await ToolRegistry.from_directory(REPO_TOOLS)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    with pytest.raises(ToolError, match="command 'jq' not found on PATH; install it"):
        await registry.call("jq", "query", {"filter": ".", "json": ["1"]})


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_grep_searches_files_and_no_match_is_an_empty_result(
    repo_tools: ToolRegistry, tmp_path: Path
) -> None:
    write(tmp_path, "a.py", "def get_x():\n    pass\n")
    write(tmp_path, "b.txt", "get_y here\n")
    out = await repo_tools.call(
        "grep", "search", {"pattern": "get_(x|y)", "paths": [str(tmp_path)]}
    )
    assert sorted(out.splitlines()) == [
        f"{tmp_path}/a.py:1:def get_x():",
        f"{tmp_path}/b.txt:1:get_y here",
    ]
    only_py = await repo_tools.call(
        "grep", "files", {"pattern": "get_", "paths": [str(tmp_path)], "include": ["*.py"]}
    )
    assert only_py == f"{tmp_path}/a.py\n"
    assert (
        await repo_tools.call("grep", "search", {"pattern": "absent", "paths": [str(tmp_path)]})
        == ""
    )
    dash = await repo_tools.call("grep", "search", {"pattern": "-v", "paths": [str(tmp_path)]})
    assert dash == ""  # the pattern is not read as an option
    with pytest.raises(ToolError, match="exit code 2"):
        await repo_tools.call("grep", "search", {"pattern": "(", "paths": [str(tmp_path)]})


class _EchoHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(404 if self.path == "/missing" else 200, b"hello from " + self.path.encode())

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = {"body": json.loads(body), "content_type": self.headers["Content-Type"]}
        self._reply(200, json.dumps(reply).encode())

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.usefixtures("tool_jail_off")  # host files / pids: see tests/security
async def test_curl_gets_and_posts_json_against_a_local_server(
    repo_tools: ToolRegistry, http_server: str, tmp_path: Path
) -> None:
    assert (
        await repo_tools.call("curl", "get", {"url": f"{http_server}/page"}) == "hello from /page"
    )
    out = await repo_tools.call(
        "curl", "post_json", {"url": f"{http_server}/api", "data": json.dumps({"a": 1})}
    )
    assert json.loads(out) == {"body": {"a": 1}, "content_type": "application/json"}
    headers = await repo_tools.call("curl", "head", {"url": f"{http_server}/page"})
    assert "HTTP/1.0 200" in headers  # after the proxy's "Connection established"
    with pytest.raises(ToolError, match="exit code 22") as info:
        await repo_tools.call("curl", "get", {"url": f"{http_server}/missing"})
    assert "404" in info.value.stderr
    direct = await repo_tools.call("curl", None, {"url": f"{http_server}/x", "silent": True})
    assert direct == "hello from /x"
    path = write(tmp_path, "f.txt", "file body")
    with pytest.raises(ToolError, match="must match"):
        await repo_tools.call("curl", "get", {"url": path.as_uri()})


async def test_calls_to_the_example_tools_run_concurrently(repo_tools: ToolRegistry) -> None:
    outs = await asyncio.gather(
        *(repo_tools.call("jq", "query", {"filter": "1+1"}) for _ in range(4))
    )
    assert len(set(outs)) == 1
