"""--quota on the command line: applied to the session, reported by doctor, checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from py_code_mode.cli.app import app


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("PY_CODE_MODE_BASE", str(tmp_path / "library"))
    return CliRunner()


def test_an_artifact_over_the_quota_is_refused_and_the_old_one_kept(cli: CliRunner) -> None:
    first = cli.invoke(app, ["artifacts", "put", "a.txt", "-"], input="small")
    refused = cli.invoke(
        app, ["artifacts", "put", "a.txt", "-", "--quota", "max_artifact_bytes=10"], input="x" * 11
    )
    kept = cli.invoke(app, ["artifacts", "get", "a.txt"])
    assert first.exit_code == 0, first.stderr
    assert refused.exit_code == 1
    assert "max_artifact_bytes=10" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert kept.stdout == "small"


def test_run_refuses_code_over_the_quota_without_a_traceback(cli: CliRunner) -> None:
    result = cli.invoke(
        app,
        ["run", "--executor", "in-process", "--quota", "max_code_bytes=1K", "-c", "#" * 2000],
    )
    assert result.exit_code != 0
    assert "max_code_bytes=1,024" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_quota_flag_names_the_accepted_names(cli: CliRunner) -> None:
    result = cli.invoke(app, ["workflows", "list", "--quota", "max_bananas=3"])
    assert result.exit_code == 2
    assert "max_artifacts" in result.stderr


def test_doctor_reports_the_quotas_in_force(cli: CliRunner) -> None:
    result = cli.invoke(app, ["doctor", "--quota", "max_artifacts=7"])
    line = next(line for line in result.stdout.splitlines() if "quotas:" in line)
    assert "max_artifacts=7" in line
    assert "max_code_bytes=4M" in line
