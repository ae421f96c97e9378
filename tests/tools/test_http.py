"""HTTP tools against a real local HTTP server (stdlib ``http.server`` in a thread)."""

from __future__ import annotations

import json
import socket
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from py_code_mode import FileStorage, Session
from py_code_mode.errors import ConfigError, ToolError, ToolNotFoundError
from py_code_mode.execution import InProcessConfig, InProcessExecutor
from py_code_mode.tools.http import HttpTool
from py_code_mode.tools.registry import ToolRegistry

SECRET = "tok-7f3a9c2e-secret"


class _Handler(BaseHTTPRequestHandler):
    """Routes: /echo/... (JSON account of the request), /text, /bytes, /empty,
    /status/<code>, /slow, /big, /redirect, /not-json, /leak."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        route = parts.path
        if route.startswith("/echo"):
            account = {
                "method": self.command,
                "path": parts.path,
                "query": parse_qsl(parts.query, keep_blank_values=True),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(body) if body else None,
                "content_type": self.headers.get("Content-Type"),
            }
            self._send(200, json.dumps(account).encode(), "application/json")
        elif route == "/text":
            self._send(200, "plain words, ünïcode".encode(), "text/plain; charset=utf-8")
        elif route == "/bytes":
            self._send(200, bytes(range(256)), "application/octet-stream")
        elif route == "/empty":
            self._send(204, b"", "")
        elif route.startswith("/status/"):
            code = int(route.rsplit("/", 1)[1])
            detail = "detail of the failure " + "x" * 3000
            self._send(code, detail.encode(), "text/plain")
        elif route == "/slow":
            time.sleep(3)
            self._send(200, b"late", "text/plain")
        elif route == "/big":
            self._send(200, b"a" * 5000, "text/plain")
        elif route == "/redirect":
            self._send(302, b"", "", Location="/text")
        elif route == "/not-json":
            self._send(200, b"{not json", "application/json")
        elif route == "/problem":
            self._send(400, b'{"error": "bad thing"}', "application/problem+json")
        elif route == "/leak":
            # A careless API that echoes the credential in its error message.
            token = self.headers.get("Authorization", "")
            self._send(401, f"invalid credentials: {token}".encode(), "text/plain")
        else:
            self._send(404, b"no such route", "text/plain")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def api_config(base_url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "api",
        "type": "http",
        "description": "A local test API",
        "base_url": base_url,
        "timeout": 5,
        "allow_addresses": ["127.0.0.1"],  # the test server listens on loopback
        "endpoints": {
            "get_item": {
                "path": "/echo/items/{item_id}",
                "description": "Fetch one item",
                "parameters": {
                    "item_id": {"type": "string", "description": "Item key"},
                    "fields": {"type": "array"},
                    "verbose": {"type": "boolean"},
                    "limit": {"type": "integer", "default": 10},
                    "page_size": {"type": "integer", "name": "page-size"},
                    "request_id": {"in": "header", "name": "X-Request-Id"},
                },
            },
            "create_item": {
                "method": "post",
                "path": "/echo/items",
                "parameters": {
                    "name": {"required": True},
                    "tags": {"type": "array"},
                    "meta": {"type": "object"},
                    "count": {"type": "number"},
                    "dry_run": {"type": "boolean", "in": "query"},
                },
            },
            "replace_all": {
                "method": "put",
                "path": "/echo/items",
                "parameters": {"items": {"type": "array", "in": "json", "required": True}},
            },
            "text": {"path": "/text"},
            "raw": {"path": "/bytes"},
            "empty": {"method": "DELETE", "path": "/empty"},
            "status": {"path": "/status/{code}", "parameters": {"code": {"type": "integer"}}},
            "slow": {"path": "/slow"},
            "big": {"path": "/big"},
            "redirect": {"path": "/redirect"},
            "not_json": {"path": "/not-json"},
            "problem": {"path": "/problem"},
            "leak": {"path": "/leak"},
        },
    }
    config.update(overrides)
    return config


@pytest.fixture
async def api(server_url: str) -> AsyncIterator[HttpTool]:
    tool = HttpTool.from_mapping(api_config(server_url))
    try:
        yield tool
    finally:
        await tool.aclose()


# -- requests ------------------------------------------------------------------------


async def test_path_parameters_are_url_encoded(api: HttpTool) -> None:
    reply = await api.call("get_item", {"item_id": "a/b c?d#e%f&ü"})
    assert reply["path"] == "/echo/items/a%2Fb%20c%3Fd%23e%25f%26%C3%BC"
    for dots in (".", ".."):
        reply = await api.call("get_item", {"item_id": dots})
        assert reply["path"] == "/echo/items/" + "%2E" * len(dots)


async def test_query_parameters_repeat_arrays_render_booleans_and_use_defaults(
    api: HttpTool,
) -> None:
    reply = await api.call(
        "get_item",
        {"item_id": "1", "fields": ["a", "b"], "verbose": True, "page_size": 5},
    )
    assert reply["method"] == "GET"
    assert reply["query"] == [
        ["fields", "a"],
        ["fields", "b"],
        ["verbose", "true"],
        ["limit", "10"],
        ["page-size", "5"],
    ]
    assert reply["body"] is None


async def test_header_parameters_are_sent_under_their_wire_name(api: HttpTool) -> None:
    reply = await api.call("get_item", {"item_id": "1", "request_id": "req-42"})
    assert reply["headers"]["x-request-id"] == "req-42"


async def test_body_parameters_form_one_json_object(api: HttpTool) -> None:
    reply = await api.call(
        "create_item",
        {"name": "n", "tags": ["x", 1], "meta": {"k": [1, None]}, "count": 2.5, "dry_run": False},
    )
    assert reply["method"] == "POST"
    assert reply["content_type"] == "application/json"
    assert reply["body"] == {"name": "n", "tags": ["x", 1], "meta": {"k": [1, None]}, "count": 2.5}
    assert reply["query"] == [["dry_run", "false"]]


async def test_a_parameter_in_json_is_the_whole_request_body(api: HttpTool) -> None:
    reply = await api.call("replace_all", {"items": [{"id": 1}, {"id": 2}]})
    assert reply["method"] == "PUT"
    assert reply["content_type"] == "application/json"
    assert reply["body"] == [{"id": 1}, {"id": 2}]


def test_a_whole_json_body_cannot_share_the_body_with_other_parameters() -> None:
    config = api_config(
        "http://127.0.0.1:9",
        endpoints={
            "mixed": {
                "method": "post",
                "path": "/x",
                "parameters": {"doc": {"type": "object", "in": "json"}, "extra": {}},
            }
        },
    )
    with pytest.raises(Exception, match="whole request body"):
        HttpTool.from_mapping(config)


async def test_a_query_string_in_the_base_url_is_kept(server_url: str) -> None:
    tool = HttpTool.from_mapping(api_config(f"{server_url}/?key=abc"))
    try:
        reply = await tool.call("get_item", {"item_id": "1"})
        assert reply["path"] == "/echo/items/1"
        assert reply["query"] == [["key", "abc"], ["limit", "10"]]
    finally:
        await tool.aclose()


# -- responses -----------------------------------------------------------------------


async def test_responses_are_json_data_text_bytes_or_none(api: HttpTool) -> None:
    assert isinstance(await api.call("get_item", {"item_id": "1"}), dict)
    assert await api.call("text", {}) == "plain words, ünïcode"
    assert await api.call("raw", {}) == bytes(range(256))
    assert await api.call("empty", {}) is None
    assert await api.call("not_json", {}) == "{not json"


async def test_an_http_error_raises_with_the_status_and_a_body_excerpt(api: HttpTool) -> None:
    with pytest.raises(ToolError) as caught:
        await api.call("status", {"code": 404})
    message = str(caught.value)
    assert "tool 'api' endpoint 'status': GET" in message
    assert "/status/404 returned HTTP 404 Not Found: detail of the failure xxx" in message
    assert len(message) < 1500
    assert caught.value.stderr.startswith("detail of the failure")
    assert caught.value.tool == "api"
    with pytest.raises(ToolError, match="returned HTTP 503 Service Unavailable: detail"):
        await api.call("status", {"code": 503})
    with pytest.raises(ToolError, match=r'HTTP 400 Bad Request: \{"error": "bad thing"\}'):
        await api.call("problem", {})


async def test_a_slow_server_times_out(server_url: str) -> None:
    tool = HttpTool.from_mapping(api_config(server_url, timeout=0.5))
    try:
        with pytest.raises(ToolError, match=r"GET .*/slow timed out after 0.5 s"):
            await tool.call("slow", {})
    finally:
        await tool.aclose()


async def test_an_unreachable_server_is_a_tool_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tool = HttpTool.from_mapping(api_config(f"http://127.0.0.1:{port}"))
    try:
        with pytest.raises(
            ToolError, match=r"endpoint 'text': GET http://127.0.0.1:\d+/text failed"
        ):
            await tool.call("text", {})
    finally:
        await tool.aclose()


async def test_redirects_are_reported_unless_following_is_enabled(server_url: str) -> None:
    tool = HttpTool.from_mapping(api_config(server_url))
    follower = HttpTool.from_mapping(api_config(server_url, follow_redirects=True))
    try:
        with pytest.raises(ToolError, match=r"HTTP 302 Found .*follow_redirects: true"):
            await tool.call("redirect", {})
        assert await follower.call("redirect", {}) == "plain words, ünïcode"
    finally:
        await tool.aclose()
        await follower.aclose()


async def test_a_response_over_the_size_limit_is_refused(server_url: str) -> None:
    tool = HttpTool.from_mapping(api_config(server_url, max_response_bytes=1000))
    try:
        with pytest.raises(ToolError, match="larger than 1000 bytes"):
            await tool.call("big", {})
        assert await tool.call("text", {}) == "plain words, ünïcode"
    finally:
        await tool.aclose()


# -- arguments -----------------------------------------------------------------------


async def test_bad_arguments_are_refused_before_sending(api: HttpTool) -> None:
    with pytest.raises(ToolError, match=r"unknown argument\(s\) 'colour'; accepted: item_id"):
        await api.call("get_item", {"item_id": "1", "colour": "red"})
    with pytest.raises(ToolError, match=r"missing required argument\(s\) 'item_id'"):
        await api.call("get_item", {})
    with pytest.raises(ToolError, match=r"argument 'limit' must be an integer, got bool True"):
        await api.call("get_item", {"item_id": "1", "limit": True})
    with pytest.raises(ToolError, match=r"'fields' must hold strings, numbers or booleans"):
        await api.call("get_item", {"item_id": "1", "fields": [{"a": 1}]})
    with pytest.raises(ToolError, match="must not contain line breaks"):
        await api.call("get_item", {"item_id": "1", "request_id": "a\r\nX-Evil: 1"})
    with pytest.raises(ToolError, match="body arguments must be JSON data"):
        await api.call("create_item", {"name": "n", "meta": {"when": object()}})


@pytest.mark.parametrize(
    ("endpoint", "args"),
    [
        ("get_item", {"item_id": "a\ud800b"}),
        ("get_item", {"item_id": "1", "fields": ["\udcff"]}),
        ("get_item", {"item_id": "1", "request_id": "\ud800"}),
        ("get_item", {"item_id": "1", "request_id": "é"}),
    ],
)
async def test_arguments_that_cannot_be_encoded_are_refused_as_tool_errors(
    api: HttpTool, endpoint: str, args: dict[str, Any]
) -> None:
    with pytest.raises(ToolError, match="which cannot be sent"):
        await api.call(endpoint, args)


async def test_unknown_endpoints_and_calling_the_tool_itself_explain_what_exists(
    api: HttpTool,
) -> None:
    with pytest.raises(ToolNotFoundError, match="no endpoint 'nope'; endpoints: get_item"):
        await api.call("nope", {})
    with pytest.raises(ToolError, match=r"call one of its endpoints as tools\.api\.<endpoint>"):
        await api.call(None, {})


async def test_endpoints_are_listed_with_route_and_parameters(api: HttpTool) -> None:
    specs = {spec.name: spec.to_dict() for spec in await api.callables()}
    get_item = specs["get_item"]
    assert get_item["description"] == "Fetch one item [GET /echo/items/{item_id}]"
    assert get_item["parameters"]["item_id"] == {
        "type": "string",
        "description": "Item key (path)",
        "required": True,
        "default": None,
    }
    assert get_item["parameters"]["limit"]["default"] == 10
    assert get_item["parameters"]["page_size"]["description"] == "(query page-size)"
    assert specs["create_item"]["parameters"]["name"]["description"] == "(body)"


async def test_calls_after_aclose_are_refused(server_url: str) -> None:
    tool = HttpTool.from_mapping(api_config(server_url))
    assert await tool.call("text", {}) == "plain words, ünïcode"
    await tool.aclose()
    await tool.aclose()
    with pytest.raises(ToolError, match="closed"):
        await tool.call("text", {})


# -- ${VAR} and secrets --------------------------------------------------------------


def secret_config(base_url: str) -> dict[str, Any]:
    return api_config(
        base_url,
        headers={"Authorization": "Bearer ${DEMO_API_TOKEN}", "X-Static": "plain"},
    )


async def test_headers_expand_variables_from_the_host_environment(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_API_TOKEN", SECRET)
    tool = HttpTool.from_mapping(secret_config(server_url))
    try:
        reply = await tool.call("get_item", {"item_id": "1"})
        # Sent to the server, masked in what comes back to agent code.
        assert reply["headers"]["authorization"] == "Bearer ${DEMO_API_TOKEN}"
        assert SECRET not in repr(reply)
        assert reply["headers"]["x-static"] == "plain"
        assert reply["headers"]["user-agent"].startswith("py-code-mode/")
    finally:
        await tool.aclose()


async def test_secrets_are_masked_in_errors_and_absent_from_listings(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_API_TOKEN", SECRET)
    monkeypatch.setenv("DEMO_BASE", server_url)
    config = secret_config("${DEMO_BASE}")
    (tmp_path / "api.json.yaml").write_text(json.dumps(config))
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        assert registry.problems == []
        listing = json.dumps(await registry.list())
        assert SECRET not in listing
        with pytest.raises(ToolError) as caught:
            await registry.call("api", "leak", {})
        assert SECRET not in str(caught.value)
        assert SECRET not in caught.value.stderr
        assert "invalid credentials: Bearer ${DEMO_API_TOKEN}" in str(caught.value)
        assert "GET ${DEMO_BASE}/leak returned HTTP 401" in str(caught.value)
    finally:
        await registry.aclose()


async def test_a_missing_variable_is_a_load_problem_and_other_tools_still_load(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEMO_API_TOKEN", raising=False)
    (tmp_path / "needs_token.yaml").write_text(json.dumps(secret_config(server_url)))
    (tmp_path / "open.yaml").write_text(json.dumps(api_config(server_url, name="open_api")))
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        assert registry.names() == ["open_api"]
        [problem] = registry.problems
        assert problem.path.endswith("needs_token.yaml")
        assert "headers.Authorization: environment variable 'DEMO_API_TOKEN' is not set" in str(
            problem
        )
        assert await registry.call("open_api", "text", {}) == "plain words, ünïcode"
    finally:
        await registry.aclose()


AGENT_CODE = """
import os
item = tools.api.get_item(item_id="x/y")
try:
    tools.api.status(code=500)
except Exception as exc:
    error = [type(exc).__name__, str(exc)[:200]]
{"path": item["path"], "error": error, "seen": os.environ.get("DEMO_API_TOKEN")}
"""


async def _run_agent_code(session: Session) -> dict[str, Any]:
    result = await session.run(AGENT_CODE, timeout=60)
    assert result.error is None, result.error
    value = result.value
    assert isinstance(value, dict)
    assert value["path"] == "/echo/items/x%2Fy"
    assert value["error"][0] == "ToolError"
    assert "returned HTTP 500 Internal Server Error" in value["error"][1]
    return value


def _tools_folder(tmp_path: Path, server_url: str) -> Path:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "api.yaml").write_text(json.dumps(secret_config(server_url)))
    return folder


async def test_agent_code_calls_endpoints_synchronously_in_process(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_API_TOKEN", SECRET)
    executor = InProcessExecutor(InProcessConfig(tools_path=_tools_folder(tmp_path, server_url)))
    async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
        # In-process code shares the host's os.environ: keep secrets out of this
        # executor's reach by using the subprocess or container executor.
        await _run_agent_code(session)


async def test_the_subprocess_worker_never_sees_the_secret_the_tool_uses(
    tmp_path: Path, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = pytest.importorskip("py_code_mode.execution.subprocess")
    monkeypatch.setenv("DEMO_API_TOKEN", SECRET)
    executor = module.SubprocessExecutor(
        module.SubprocessConfig(tools_path=_tools_folder(tmp_path, server_url))
    )
    async with Session(storage=FileStorage(tmp_path / "data"), executor=executor) as session:
        value = await _run_agent_code(session)
        assert value["seen"] is None
        listing = await session.run("str(tools.list()) + str(tools.api.describe())", timeout=60)
        assert listing.error is None
        assert SECRET not in str(listing.value)
        environ = await session.run("str(dict(__import__('os').environ))", timeout=60)
        assert SECRET not in str(environ.value)


# -- bad tool files ------------------------------------------------------------------


def _endpoints(body: str) -> str:
    return "name: x\ntype: http\nbase_url: http://h\nendpoints:\n" + textwrap.indent(
        textwrap.dedent(body), "  "
    )


BAD_FILES = {
    "no_endpoints.yaml": (
        "name: a\ntype: http\nbase_url: http://h\n",
        "endpoints: Field required",
    ),
    "no_base.yaml": ("name: b\ntype: http\nendpoints: {e: {}}\n", "base_url: Field required"),
    "scheme.yaml": (
        "name: c\ntype: http\nbase_url: ftp://h\nendpoints: {e: {}}\n",
        "base_url: expected an http:// or https:// URL",
    ),
    "method.yaml": (_endpoints("e: {method: FETCH}\n"), "endpoints.e.method: unknown HTTP method"),
    "path.yaml": (_endpoints("e: {path: items}\n"), "path must start with '/'"),
    "placeholder.yaml": (
        _endpoints("e: {path: '/items/{id}'}\n"),
        "endpoints.e.path: placeholder {id} has no parameter",
    ),
    "not_in_path.yaml": (
        _endpoints("e: {path: /items, parameters: {id: {in: path}}}\n"),
        "endpoints.e.parameters.id: `in: path` but the path '/items' has no {id}",
    ),
    "location.yaml": (
        _endpoints("e: {parameters: {q: {in: cookie}}}\n"),
        "endpoints.e.parameters.q.in: Input should be 'path', 'query', 'body', 'header' or 'json'",
    ),
    "object_query.yaml": (
        _endpoints("e: {parameters: {q: {type: object}}}\n"),
        "an object can only be sent `in: body`",
    ),
    "default.yaml": (
        _endpoints("e: {parameters: {n: {type: integer, default: ten}}}\n"),
        "endpoints.e.parameters.n.default: must be an integer, got str 'ten'",
    ),
    "endpoint_name.yaml": (_endpoints("get-item: {}\n"), "must be Python identifiers"),
    "reserved.yaml": (_endpoints("describe: {}\n"), "'describe' is reserved"),
    "param_name.yaml": (_endpoints("e: {parameters: {per-page: {}}}\n"), "keep the wire name"),
    "typo.yaml": (_endpoints("e: {pathh: /x}\n"), "endpoints.e.pathh: Extra inputs"),
    "header.yaml": (
        "name: d\ntype: http\nbase_url: http://h\nheaders: {'Bad Header': x}\nendpoints: {e: {}}\n",
        "'Bad Header' is not a valid HTTP header name",
    ),
    "missing_var.yaml": (
        "name: f\ntype: http\nbase_url: 'http://h/${DEMO_SURELY_UNSET_VAR}'\nendpoints: {e: {}}\n",
        "base_url: environment variable 'DEMO_SURELY_UNSET_VAR' is not set",
    ),
}


async def test_bad_http_files_are_problems_and_the_good_one_still_loads(
    tmp_path: Path, server_url: str
) -> None:
    for name, (text, _) in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "good.yaml").write_text(json.dumps(api_config(server_url)))
    registry = await ToolRegistry.from_directory(tmp_path)
    try:
        assert registry.names() == ["api"]
        problems = {Path(p.path).name: p.message for p in registry.problems}
        assert set(problems) == set(BAD_FILES)
        for name, (_, expected) in BAD_FILES.items():
            assert expected in problems[name], (name, problems[name])
        assert await registry.call("api", "text", {}) == "plain words, ünïcode"
    finally:
        await registry.aclose()


def test_parameter_location_defaults_follow_the_path_and_method() -> None:
    tool = HttpTool.from_mapping(api_config("http://127.0.0.1:1"))
    endpoints = {e.name: e for e in tool.spec.endpoints}
    get_item = {p.name: p.location for p in endpoints["get_item"].parameters}
    assert get_item["item_id"] == "path"
    assert get_item["fields"] == "query"
    create = {p.name: p.location for p in endpoints["create_item"].parameters}
    assert create["name"] == "body"
    assert create["dry_run"] == "query"


def test_a_header_value_that_expands_to_a_line_break_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"headers\.X: the expanded value contains a line break"):
        HttpTool.from_mapping(
            api_config("http://h", headers={"X": "${EVIL}"}), environ={"EVIL": "a\r\nb: c"}
        )
