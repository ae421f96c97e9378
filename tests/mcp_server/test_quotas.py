"""--quota and --confirm server flags, and a refused run over MCP (official client, stdio)."""

from __future__ import annotations

from pathlib import Path

import pytest

from py_code_mode.errors import ConfigError
from py_code_mode.mcp_server.options import parse_args
from tests.mcp_server._support import call, run, stdio_session, text_of


def test_quota_and_confirm_flags_reach_the_session(tmp_path: Path) -> None:
    options = parse_args(
        ["--base", str(tmp_path), "--quota", "max_artifacts=5", "--quota", "max_code_bytes=2M",
         "--confirm", "git", "--confirm", "curl.*"]
    )  # fmt: skip
    session = options.make_session()
    quotas = options.make_quotas()
    assert (quotas.max_artifacts, quotas.max_code_bytes) == (5, 2 * 1024 * 1024)
    assert session._quotas == quotas
    assert session._approvals.patterns == ("git", "curl.*")


def test_a_bad_quota_is_refused_at_startup(tmp_path: Path) -> None:
    options = parse_args(["--base", str(tmp_path), "--quota", "max_artifacts=many"])
    with pytest.raises(ConfigError, match="--quota 'max_artifacts=many'"):
        options.check()


async def test_code_over_the_quota_is_a_tool_error_and_the_server_keeps_serving(
    tmp_path: Path,
) -> None:
    async with stdio_session(
        tmp_path, "--executor", "in-process", "--quota", "max_code_bytes=1K"
    ) as session:
        refused = await call(session, "run_code", code="x = 1\n" + "#" * 2_000)
        saved = await run(
            session,
            "artifacts.save('a', 'kept')\n"
            "try:\n    artifacts.save('b', 'x' * 10)\n    out = None\n"
            "except ArtifactQuotaError as exc:\n    out = exc.quota\nout",
        )
        assert refused.is_error
        assert "max_code_bytes=1,024" in text_of(refused)
        assert saved["value"] is None  # the default artifact quota is generous
        assert (await run(session, "artifacts.load('a')"))["value"] == "kept"
