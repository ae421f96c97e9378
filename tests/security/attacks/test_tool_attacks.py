"""Agent code turns the shipped tools against the host: every attempt is refused or contained.

Each attack is agent code run in a session of each executor (in-process,
subprocess, container), calling the repository's example tools as an attacker
would. After every attack: no host file was written, the loopback canary got no
connection, and no secret of the host (a file outside the project, a host
environment variable, the value behind a tool file's ``${VAR}``) appears anywhere
in the result.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from py_code_mode import Session
from py_code_mode.cli.doctor import check_tools
from py_code_mode.errors import ToolError
from py_code_mode.tools._egress import AddressPolicy, parse_networks
from py_code_mode.tools.http import HttpTool
from py_code_mode.tools.registry import ToolRegistry
from tests._shipped_tools import shipped_tools
from tests.mcp_server._support import call, stdio_session, text_of

from .conftest import Canary, Host

PRELUDE = """
def attempt(call):
    try:
        return ["ok", str(call())]
    except Exception as exc:
        return ["refused", type(exc).__name__, str(exc)]
"""

ATTACKS: dict[str, list[str]] = {
    "git writes a host file with --output": [
        "tools.git(subcommand='log', args=['-1', '--output={pwn}'])",
        "tools.git(subcommand='log', revisions=['--output={pwn}'])",
        "tools.git(subcommand='log', paths=['--output={pwn}'])",
        "tools.git.log(revisions=['-1', '--output={pwn}'])",
        "tools.git.diff(revisions=['--output={pwn}'], stat=True)",
        "tools.git(subcommand='log', since='--output={pwn}')",
        "tools.git(subcommand='log', author='x --output={pwn}')",
    ],
    "git runs host commands with --upload-pack, pagers, -c and --exec-path": [
        "tools.git(subcommand='ls-remote', args=['--upload-pack=touch {pwn};', '.'])",
        "tools.git(subcommand='ls-remote', revisions=['--upload-pack=touch {pwn};', '.'])",
        "tools.git(subcommand='grep', args=['--open-files-in-pager=touch {pwn};', '-e', 'x'])",
        "tools.git(subcommand='log', revisions=['--open-files-in-pager=touch {pwn};'])",
        "tools.git(subcommand='-c', revisions=['core.pager=touch {pwn}', 'log'])",
        "tools.git(subcommand='log', revisions=['--exec-path={pwn}'])",
        "tools.git(subcommand='log', grep='x', revisions=['-c', 'core.pager=touch {pwn}'])",
        "tools.git(subcommand='fetch', revisions=['ext::sh -c touch% {pwn}'])",
    ],
    "git reads repositories outside the declared paths": [
        "tools.git.log(repo='/')",
        "tools.git.log(repo='{project}/..')",
        "tools.git.status(repo='{secret_dir}')",
    ],
    "curl reads host files": [
        "tools.curl(url='file://{secret_file}')",
        "tools.curl.get(url='file://{secret_file}')",
        "tools.curl.get(url='FILE://{secret_file}')",
        "tools.curl(url='https://example.org', header=['@{secret_file}'])",
        "tools.curl(url='http://127.0.0.1:{port}/x', config='{secret_file}')",
    ],
    "curl sends host files out": [
        "tools.curl(url='http://127.0.0.1:{port}/x', data='@{secret_file}')",
        "tools.curl.post_json(url='http://127.0.0.1:{port}/x', data='@{secret_file}')",
        "tools.curl(url='http://127.0.0.1:{port}/x', upload_file='{secret_file}')",
    ],
    "curl writes host files": [
        "tools.curl(url='http://127.0.0.1:{port}/x', output='{pwn}')",
        "tools.curl(url='--output={pwn}')",
        "tools.curl(url='http://127.0.0.1:{port}/x -o {pwn}')",
        "tools.curl(url='http://127.0.0.1:{port}/x', request='GET -o {pwn}')",
        "tools.curl(url='http://127.0.0.1:{port}/x', user_agent='x\\r\\n-o {pwn}')",
    ],
    "curl reaches host-loopback and private services": [
        "tools.curl(url='gopher://127.0.0.1:{port}/_hello')",
        "tools.curl(url='dict://127.0.0.1:{port}/x')",
        "tools.curl(url='telnet://127.0.0.1:{port}')",
        "tools.curl.get(url='http://127.0.0.1:{port}/x')",
        "tools.curl.get(url='https://127.0.0.1:{port}/x')",
        "tools.curl.get(url='http://localhost:{port}/x')",
        "tools.curl.get(url='http://[::ffff:127.0.0.1]:{port}/x')",
        "tools.curl.get(url='http://2130706433:{port}/x')",
        "tools.curl.get(url='http://0.0.0.0:{port}/x')",
        "tools.curl.get(url='http://127.1:{port}/x')",
        "tools.curl.head(url='http://127.0.0.1:{port}/x')",
        "tools.curl.get(url='http://169.254.169.254/latest/meta-data/')",
        "tools.curl.get(url='http://10.0.0.1:{port}/x', max_time=2)",
    ],
    "grep reads host paths": [
        "tools.grep(pattern='.', paths=['{secret_file}'])",
        "tools.grep(pattern='.', paths=['/etc/passwd'])",
        "tools.grep.search(pattern='.', paths=['../home'])",
        "tools.grep.search(pattern='S3CRET', paths=['escape'])",
        "tools.grep.search(pattern='S3CRET')",
        "tools.grep(pattern='-f{secret_file}', paths=['notes.txt'])",
        "tools.grep(pattern='x', paths=['notes.txt'], include=['--file={secret_file}'])",
        "tools.grep(pattern='x', paths=['-r', '/'])",
        "tools.grep(pattern='S3CRET', recursive=True, paths=['.', '--dereference-recursive'])",
    ],
    "jq prints the host environment and reads host files": [
        "tools.jq.query(filter='$ENV')",
        "tools.jq.query(filter='env')",
        "tools.jq.query(filter='[$ENV[]] | join(\",\")')",
        "tools.jq.query(filter='import \"{secret_file}\" as $s; $s')",
        "tools.jq.query(filter='include \"{secret_file}\"; .')",
        "tools.jq.files(filter='.', files=['{secret_file}'])",
        "tools.jq.files(filter='input_filename', files=['escape'])",
        "tools.jq.query(filter='.', json=['--rawfile', 'x', '{secret_file}'])",
        "tools.jq.query(filter='--rawfile')",
    ],
    "a tool file's ${VAR} secret never comes back": [
        "tools.api.whoami()",
        "tools.list()",
        "tools.search('api token')",
        "tools.api.describe()",
    ],
}


def _code(attacks: list[str], host: Host, canary: Canary) -> str:
    values = {
        "pwn": host.pwn,
        "port": canary.port,
        "secret_file": host.secret_file,
        "secret_dir": host.secret_file.parent,
        "project": host.project,
    }
    calls = ",\n    ".join(f"attempt(lambda: {a.format(**values)})" for a in attacks)
    return f"{PRELUDE}\n[\n    {calls}\n]"


def _assert_contained(result: Any, host: Host, canary: Canary) -> list[list[str]]:
    assert result.error is None, result.error
    dumped = json.dumps(result.to_dict(), ensure_ascii=False)
    for secret in host.secrets:
        assert secret not in dumped
    assert not host.pwn.exists(), "an attack wrote a host file"
    assert canary.connections == [], "a tool connected to a host-loopback service"
    outcomes: list[list[str]] = result.value
    return outcomes


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_attacks_through_the_shipped_tools_are_refused_or_contained(
    session: Session, host: Host, canary: Canary, attack: str
) -> None:
    result = await session.run(_code(ATTACKS[attack], host, canary), timeout=60)
    outcomes = _assert_contained(result, host, canary)
    assert len(outcomes) == len(ATTACKS[attack])


async def test_the_file_and_loopback_attacks_are_refused_with_a_reason(
    session: Session, host: Host, canary: Canary
) -> None:
    attacks = [
        *ATTACKS["curl reads host files"],
        *ATTACKS["curl sends host files out"],
        *ATTACKS["curl reaches host-loopback and private services"],
        *ATTACKS["git runs host commands with --upload-pack, pagers, -c and --exec-path"],
        "tools.grep(pattern='.', paths=['{secret_file}'])",
        "tools.jq.files(filter='.', files=['{secret_file}'])",
    ]
    result = await session.run(_code(attacks, host, canary), timeout=60)
    outcomes = _assert_contained(result, host, canary)
    for attack, outcome in zip(attacks, outcomes, strict=True):
        assert outcome[0] == "refused", (attack, outcome)
        assert outcome[1] == "ToolError", (attack, outcome)


async def test_jq_sees_an_empty_environment(session: Session, host: Host, canary: Canary) -> None:
    result = await session.run("tools.jq.query(filter='$ENV | keys')")
    assert result.error is None, result.error
    # PWD is set by the per-call jail when it changes into the call's directory.
    assert set(json.loads(result.value)) - {"PWD"} == {"LANG", "LC_ALL", "PATH"}


async def test_the_shipped_tools_still_do_their_jobs(
    session: Session, host: Host, canary: Canary
) -> None:
    code = """[
        tools.git.log(),
        tools.grep.search(pattern='hello'),
        tools.jq.files(filter='.items | length', files=['data.json']),
        tools.jq.query(filter='$ARGS.positional[0].a', json=['{"a": 5}']),
    ]"""
    result = await session.run(code, timeout=60)
    assert result.error is None, result.error
    log, grep, count, value = result.value
    assert "first" in log
    assert "notes.txt:1:hello from the project" in grep
    assert count.strip() == "2"
    assert value.strip() == "5"


# -- the egress rules themselves, on the host ------------------------------------------


class _Redirector(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        if self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"allowed service"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def allowed_service(canary: Canary) -> Iterator[str]:
    """An HTTP service on 127.0.0.2 (listed in allow_addresses) that redirects to the canary."""
    handler = type("Handler", (_Redirector,), {"target": f"http://127.0.0.1:{canary.port}/x"})
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.2:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_curl_reaches_a_listed_range_but_not_a_redirect_to_loopback(
    host: Host, canary: Canary, allowed_service: str
) -> None:
    curl_file = host.tools / "curl.yaml"
    curl = yaml.safe_load(curl_file.read_text())
    curl["allow_addresses"] = ["127.0.0.2/32"]
    curl_file.write_text(yaml.safe_dump(curl))
    registry = await ToolRegistry.from_directory(host.tools)
    try:
        assert await registry.call("curl", "get", {"url": f"{allowed_service}/page"}) == (
            "allowed service"
        )
        with pytest.raises(ToolError, match=r"the host refused the connection.*127\.0\.0\.1"):
            await registry.call("curl", "get", {"url": f"{allowed_service}/hop"})
    finally:
        await registry.aclose()
    assert canary.connections == []


async def test_an_http_tool_refuses_loopback_and_redirects_into_it(
    canary: Canary, allowed_service: str
) -> None:
    config: dict[str, Any] = {
        "name": "svc",
        "type": "http",
        "base_url": allowed_service,
        "follow_redirects": True,
        "endpoints": {"page": {"path": "/page"}, "hop": {"path": "/hop"}},
    }
    closed = HttpTool.from_mapping(config)
    try:
        with pytest.raises(ToolError, match="not a public address"):
            await closed.call("page", {})
    finally:
        await closed.aclose()
    tool = HttpTool.from_mapping({**config, "allow_addresses": ["127.0.0.2"]})
    try:
        assert await tool.call("page", {}) == "allowed service"
        with pytest.raises(ToolError, match=r"127\.0\.0\.1.*not a public address"):
            await tool.call("hop", {})
    finally:
        await tool.aclose()
    assert canary.connections == []


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("::127.0.0.1", False),  # IPv4-compatible form: Python calls it global
        ("::a9fe:a9fe", False),  # 169.254.169.254, IPv4-compatible
        ("64:ff9b::7f00:1", False),  # NAT64 form of 127.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 form of a public address
        ("::", False),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("fe80::1", False),
        ("224.0.0.1", False),
        ("not-an-address", False),
    ],
)
def test_only_public_addresses_are_permitted_by_default(address: str, allowed: bool) -> None:
    assert AddressPolicy().permits(address) is allowed


def test_allow_addresses_opens_exactly_the_listed_ranges() -> None:
    policy = AddressPolicy(parse_networks(["10.0.0.0/8", "127.0.0.1"]))
    assert policy.permits("10.200.0.1")
    assert policy.permits("127.0.0.1")
    assert not policy.permits("127.0.0.2")
    assert not policy.permits("192.168.0.1")
    with pytest.raises(ValueError, match="not an IP address or range"):
        parse_networks(["example.org"])


# -- free-form passthrough is opt-in and reported ----------------------------------------

PASSTHROUGH = {
    "name": "raw",
    "description": "Any git command",
    "command": "git",
    "schema": {"positional": [{"name": "args", "type": "array", "passthrough": True}]},
}


async def test_passthrough_without_the_unsafe_marker_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "raw.yaml").write_text(yaml.safe_dump(PASSTHROUGH))
    registry = await ToolRegistry.from_directory(tmp_path)
    assert registry.names() == []
    assert "unsafe_passthrough: true" in registry.problems[0].message


async def test_a_tool_marked_unsafe_is_reported_as_unsafe_by_list(tmp_path: Path) -> None:
    (tmp_path / "raw.yaml").write_text(yaml.safe_dump({**PASSTHROUGH, "unsafe_passthrough": True}))
    registry = await ToolRegistry.from_directory(tmp_path)
    (entry,) = await registry.list()
    assert "unsafe_passthrough" in entry["unsafe"]
    assert "git" in await registry.call("raw", None, {"args": ["--version"]})
    await registry.aclose()


async def test_no_shipped_tool_is_unsafe(host: Host) -> None:
    registry = await ToolRegistry.from_directory(host.tools)
    assert registry.problems == []
    assert all("unsafe" not in entry for entry in await registry.list())
    await registry.aclose()


def test_doctor_names_a_tool_marked_unsafe(tmp_path: Path) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "raw.yaml").write_text(
        yaml.safe_dump({**PASSTHROUGH, "unsafe_passthrough": True})
    )
    check = check_tools(tmp_path)
    assert check.status == "warn"
    assert "UNSAFE" in check.detail
    assert "raw (unsafe_passthrough" in check.detail
    shipped = tmp_path / "shipped"
    shipped_tools(shipped / "tools", tmp_path)
    assert check_tools(shipped).status == "ok"


async def test_list_tools_over_mcp_marks_an_unsafe_tool(tmp_path: Path) -> None:
    tools = tmp_path / "base" / "tools"
    tools.mkdir(parents=True)
    (tools / "raw.yaml").write_text(yaml.safe_dump({**PASSTHROUGH, "unsafe_passthrough": True}))
    async with stdio_session(tmp_path / "base") as session:
        listed = await call(session, "list_tools")
    assert "UNSAFE: unsafe_passthrough" in text_of(listed)
    (entry,) = (listed.structured_content or {})["tools"]
    assert "unsafe_passthrough" in entry["unsafe"]


async def test_git_does_not_climb_out_of_a_declared_directory_into_a_parent_repository(
    host: Host,
) -> None:
    inner = host.project / "inner"
    inner.mkdir()
    (inner / "file.txt").write_text("x\n")
    registry = await ToolRegistry.from_directory(shipped_tools(host.tools.parent / "t2", inner))
    try:
        with pytest.raises(ToolError, match="not a git repository"):
            await registry.call("git", "log", {})
    finally:
        await registry.aclose()
