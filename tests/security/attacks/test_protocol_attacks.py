"""Agent code attacks the host through the worker protocol and through what it outputs.

Forged frames (garbage, wrong shapes, an unhashable id, a huge announced size),
floods of log frames, lone surrogates in every kind of output, and a code string of
50 MB: the host refuses or contains each, no host task dies, and the session
answers the next run. The MCP server (stdio, through the official SDK client) and
the CLI get the same treatment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from py_code_mode import ExecutionResult, FileStorage, Session
from py_code_mode._private.worker_frames import LOG_BURST, LogLimiter, check_worker_frame
from py_code_mode.errors import QuotaExceededError
from py_code_mode.worker.wire import ProtocolError
from tests.mcp_server._support import (
    call,
    http_server,
    http_session,
    run,
    server_env,
    stdio_session,
    text_of,
)

from .conftest import EXECUTORS

FORGE = r"""
import gc, struct
transport = next(o for o in gc.get_objects() if type(o).__name__ == "_Transport")
def raw(body, announced=None):
    size = len(body) if announced is None else announced
    transport.wfile.write(struct.pack(">I", size) + body)
    transport.wfile.flush()
"""

FORGED_FRAMES = {
    "garbage": "raw(b'\\x00\\xffnot json at all')",
    "not an object": "raw(b'[1, 2, 3]')",
    "unknown kind": 'raw(b\'{"kind": "launch_missiles"}\')',
    "a host-only kind": 'raw(b\'{"kind": "shutdown"}\')',
    "unhashable result id": 'raw(b\'{"kind": "result", "id": [1], "outcome": {}}\')',
    "unhashable rpc id": 'raw(b\'{"kind": "rpc", "id": {"a": 1}, "method": "x", "params": {}}\')',
    "rpc params not an object": 'raw(b\'{"kind": "rpc", "id": 7, "method": "x", "params": 5}\')',
    "output text not a string": 'raw(b\'{"kind": "output", "id": 1, "text": {"a": 1}}\')',
    "bool id": 'raw(b\'{"kind": "reset_done", "id": true}\')',
    "log without a message": 'raw(b\'{"kind": "log", "level": "warning"}\')',
    "invalid bytes tag": 'raw(b\'{"kind": "output", "id": 1, "text": {"$b": 5}}\')',
    "huge announced size": "raw(b'', announced=2**31)",
    "deep nesting": (
        'raw(b\'{"kind": "rpc", "id": 1, "method": "x", "params": '
        "{\"a\": ' + b'[' * 100000 + b']' * 100000 + b'}}')"
    ),
    "a flood of namespace calls": (
        "import json\n"
        "flood = b''.join(struct.pack('>I', len(b)) + b for b in (json.dumps({'kind': 'rpc', "
        "'id': i, 'method': 'artifacts.list', 'params': {}}).encode() for i in range(50_000)))\n"
        "transport.wfile.write(flood); transport.wfile.flush()"
    ),
    "truncated frame then more": "raw(b'{\"kind\":', announced=100); raw(b'x' * 200)",
}

ISOLATED = [kind for kind in sorted(EXECUTORS) if kind != "in-process"]


@pytest.fixture(params=ISOLATED)
async def isolated(request: pytest.FixtureRequest, tmp_path: Path) -> Session:
    executor = EXECUTORS[str(request.param)](None)
    session = Session(storage=FileStorage(tmp_path / "storage"), executor=executor)
    await session.start()
    yield session  # type: ignore[misc]
    await session.close()


@pytest.fixture(params=sorted(EXECUTORS))
async def any_session(request: pytest.FixtureRequest, tmp_path: Path) -> Session:
    executor = EXECUTORS[str(request.param)](None)
    session = Session(storage=FileStorage(tmp_path / "storage"), executor=executor)
    await session.start()
    yield session  # type: ignore[misc]
    await session.close()


def _encodes(result: ExecutionResult) -> str:
    """The result as UTF-8 JSON, the way every transport will carry it."""
    text = json.dumps(result.to_dict(), ensure_ascii=False)
    text.encode("utf-8")  # raises on a lone surrogate
    return text


# -- forged frames -----------------------------------------------------------------


async def test_every_forged_frame_ends_the_worker_with_a_protocol_error_and_the_session_recovers(
    isolated: Session,
) -> None:
    assert (await isolated.run("x = 1")).is_ok
    for name, forge in FORGED_FRAMES.items():
        result = await isolated.run(FORGE + forge + "\nimport time; time.sleep(5)", timeout=30)
        assert result.error_type == "ProtocolError", (name, result.error)
        assert "broke the protocol" in (result.error or ""), name
        assert result.variables_lost, name
        after = await isolated.run("1 + 1", timeout=30)
        assert after.value == 2, (name, after.error)


async def test_ten_thousand_log_frames_are_capped_in_the_host_log(
    isolated: Session, caplog: pytest.LogCaptureFixture
) -> None:
    code = FORGE + (
        "import json\n"
        "import uuid\n"
        "run = uuid.uuid4().hex\n"
        "for i in range(10_000):\n"
        "    message = f'flood {run} {i} ' + 'x' * 3000\n"
        "    raw(json.dumps({'kind': 'log', 'level': 'warning', 'message': message}).encode())\n"
        "'sent'"
    )
    with caplog.at_level(logging.WARNING, logger="py_code_mode"):
        result = await isolated.run(code, timeout=60)
    assert result.value == "sent", result.error
    flood = [r for r in caplog.records if "flood" in r.getMessage()]
    assert 1 <= len(flood) <= LOG_BURST + 10
    assert sum(len(r.getMessage()) for r in flood) < 1_000_000
    assert (await isolated.run("2 + 2")).value == 4


async def test_a_forged_log_frame_does_not_silence_the_same_warning_later(
    isolated: Session, caplog: pytest.LogCaptureFixture
) -> None:
    # Agent code forges the text of a warning the worker may send later; the host must
    # not remember it and log the real one only at debug level.
    code = FORGE + (
        "import json\n"
        "raw(json.dumps({'kind': 'log', 'level': 'warning', 'message': 'forged-once'}).encode())\n"
        "'sent'"
    )
    with caplog.at_level(logging.WARNING, logger="py_code_mode"):
        for _ in range(2):
            assert (await isolated.run(code, timeout=30)).value == "sent"
    forged = [r for r in caplog.records if "forged-once" in r.getMessage()]
    assert len(forged) == 2
    assert all(r.levelno == logging.WARNING for r in forged)


async def test_a_huge_log_frame_with_lone_surrogates_is_capped_and_encodable(
    isolated: Session, caplog: pytest.LogCaptureFixture
) -> None:
    code = FORGE + (
        "import json\n"
        "message = 'huge-log \\udcff' + 'y' * 1_000_000\n"
        "raw(json.dumps({'kind': 'log', 'level': 'warning', 'message': message}).encode())\n"
        "raw(json.dumps({'kind': 'output', 'id': 'another-run', 'text': 'stolen'}).encode())\n"
        "'sent'"
    )
    with caplog.at_level(logging.WARNING, logger="py_code_mode"):
        result = await isolated.run(code, timeout=30)
    assert result.value == "sent", result.error
    assert "stolen" not in result.stdout
    huge = [r.getMessage() for r in caplog.records if "huge-log" in r.getMessage()]
    assert len(huge) == 1
    assert len(huge[0]) < 10_000
    huge[0].encode("utf-8")


def test_the_frame_check_accepts_what_the_worker_sends() -> None:
    for message in (
        {"kind": "hello", "version": 1, "pid": 3},
        {"kind": "ready", "warnings": ["w"]},
        {"kind": "output", "id": 1, "text": "hi"},
        {"kind": "result", "id": 1, "outcome": {"value": [1], "stdout": "", "error": None}},
        {"kind": "rpc", "id": 2, "method": "artifacts.list", "params": {}},
        {"kind": "reset_done", "id": 3},
        {"kind": "log", "level": "warning", "message": "m"},
    ):
        assert check_worker_frame(message) is message
    with pytest.raises(ProtocolError, match="id of type list"):
        check_worker_frame({"kind": "output", "id": [1], "text": "x"})


def test_the_log_limiter_lets_a_burst_through_then_a_steady_trickle() -> None:
    limiter = LogLimiter(burst=3, rate=0.0, total=100)
    admitted = [limiter.admit(f"m{i}") for i in range(10)]
    assert admitted[:3] == ["m0", "m1", "m2"]
    assert admitted[3:] == [None] * 7
    assert limiter.admit("a\udcffb") is None
    capped = LogLimiter(burst=100, rate=0.0, total=2)
    assert capped.admit("one") == "one"
    assert "log limit reached" in (capped.admit("two\udcff") or "")
    assert capped.admit("three") is None


# -- output that no encoder accepts ------------------------------------------------

SURROGATES = r"""
import sys
print('a\udcffb')
print('err\ud800', file=sys.stderr)
try:
    artifacts.save('name\udcff', 'v')
except Exception as exc:
    print('artifact refused', type(exc).__name__)
artifacts.save('ok', 'text \udcff inside')
try:
    workflows.create('w_sur', 'def run():\n    return "\udcff"\n', description='d\udcff')
except Exception as exc:
    print('workflow refused', type(exc).__name__)
escaped = b'\xff\xfe'.decode('utf-8', 'surrogateescape')
{'k\udcff': ['v\ud800', artifacts.load('ok')], 'bytes': escaped}
"""


async def test_lone_surrogates_anywhere_reach_the_caller_escaped(any_session: Session) -> None:
    result = await any_session.run(SURROGATES)
    assert result.error is None, result.error
    text = _encodes(result)
    assert "a\\udcffb" in result.stdout
    assert "k\\udcff" in result.value
    assert "\\udcff" in text
    failed = await any_session.run("raise ValueError('bad \\udcff value')")
    assert failed.error_type == "ValueError"
    assert "bad \\udcff value" in (failed.error or "")
    _encodes(failed)


RPC_OUTSIDE_THE_TABLE = r"""
host = tools._host
refused = []
for method in ("session.run", "session.reset", "nope", "tools.list\ud800", "\udcff" * 200):
    try:
        host.call(method, {"code": "import os; os.system('touch /tmp/pwned')"})
    except Exception as exc:
        refused.append((type(exc).__name__, str(exc)))
refused
"""


async def test_an_rpc_naming_a_command_outside_the_agent_table_is_refused_and_the_worker_lives(
    isolated: Session,
) -> None:
    result = await isolated.run(RPC_OUTSIDE_THE_TABLE, timeout=30)
    assert result.error is None, result.error
    _encodes(result)
    assert result.value.count("unknown host method") == 5, result.value  # value is a repr
    assert not result.variables_lost
    assert (await isolated.run("host is tools._host", timeout=30)).value is True


# -- code size ---------------------------------------------------------------------


async def test_a_50_mb_code_string_is_refused_quickly_with_the_quota_named(
    any_session: Session,
) -> None:
    started = time.perf_counter()
    with pytest.raises(QuotaExceededError) as refused:
        await any_session.run("x = 1\n" * (50 * 1024 * 1024 // 6))
    assert time.perf_counter() - started < 10
    assert refused.value.quota == "max_code_bytes"
    assert "max_code_bytes" in str(refused.value)
    assert (await any_session.run("3 * 3")).value == 9


# -- the MCP server over stdio and the CLI ---------------------------------------------


@contextlib.asynccontextmanager
async def mcp_session(transport: str, base: Path) -> AsyncIterator[ClientSession]:
    if transport == "stdio":
        async with stdio_session(base) as session:
            yield session
        return
    with http_server(base) as server:
        async with http_session(server.url) as session:
            yield session


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_the_mcp_server_answers_after_every_attack(tmp_path: Path, transport: str) -> None:
    async with mcp_session(transport, tmp_path / "base") as session:
        printed = await run(session, "print('a\\udcffb'); 'x\\udcff'")
        assert printed["stdout"] == "a\\udcffb\n"
        assert printed["value"] == "x\\udcff"
        saved = await run(session, "artifacts.save('sur', 'text \\udcff inside'); 'saved'")
        assert saved["value"] == "saved"
        loaded = await call(session, "load_artifact", name="sur")
        assert "text \\udcff inside" in text_of(loaded)
        forged = await call(session, "run_code", code=FORGE + FORGED_FRAMES["unhashable result id"])
        assert "ProtocolError" in text_of(forged)
        huge_code = "x = 1\n" * (50 * 1024 * 1024 // 6)
        if transport == "stdio":
            huge = await call(session, "run_code", code=huge_code)
            assert "max_code_bytes" in text_of(huge)
        else:
            # The SDK's HTTP transport answers a body over 4 MiB with 413 before parsing it.
            with pytest.raises(MCPError):
                await call(session, "run_code", code=huge_code)
        assert (await run(session, "21 * 2"))["value"] == 42
        with anyio.fail_after(120):
            results = await asyncio.gather(*(run(session, f"{i} + 1") for i in range(100)))
        assert [r["value"] for r in results] == list(range(1, 101))
        listed = await call(session, "list_tools")
        assert not listed.is_error


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_the_cli_prints_surrogates_without_a_traceback(tmp_path: Path, extra: list[str]) -> None:
    env = {**server_env(), "PY_CODE_MODE_BASE": str(tmp_path / "library"), "LANG": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)
    code = "import sys\nprint('a\\udcffb')\nprint('e\\ud800', file=sys.stderr)\n'x\\udcff'"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "py_code_mode.cli",
            "run",
            "--executor",
            "in-process",
            *extra,
            "-c",
            code,
        ],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    out, err = done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    assert done.returncode == 0, err
    assert "Traceback" not in out + err
    if extra:
        data = json.loads(out)
        assert data["stdout"] == "a\\udcffb\n"
        assert data["stderr"] == "e\\ud800\n"
        assert data["value"] == "x\\udcff"
    else:
        assert "a\\udcffb" in out
        assert "x\\udcff" in out


def test_the_cli_prints_a_stored_surrogate_artifact_without_a_traceback(tmp_path: Path) -> None:
    env = {**server_env(), "LANG": "C.UTF-8"}
    env.pop("PYTHONIOENCODING", None)
    base = ["--base", str(tmp_path / "library")]
    cli = [sys.executable, "-m", "py_code_mode.cli"]
    save = "artifacts.save('sur', 'text \\udcff inside')"
    for argv in (
        [*cli, "run", *base, "--executor", "in-process", "-c", save],
        [*cli, "artifacts", "get", "sur", *base],
        [*cli, "artifacts", "list", *base],
    ):
        done = subprocess.run(argv, capture_output=True, env=env, timeout=120, check=False)
        err = done.stderr.decode("utf-8")
        assert done.returncode == 0, err
        assert "Traceback" not in err
    assert done.stdout.decode("utf-8")
