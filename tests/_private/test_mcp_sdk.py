from __future__ import annotations

from importlib import metadata

import pytest

from py_code_mode._private import mcp_sdk
from py_code_mode.errors import ConfigError


def test_the_installed_sdk_is_read_and_2_x_is_accepted() -> None:
    major = mcp_sdk.mcp_major()
    assert major in (1, 2)  # 1.x in .ci/mcp1.sh's environment
    if major == 2:
        mcp_sdk.require_mcp2("the MCP server")
    else:
        with pytest.raises(ConfigError, match="needs the mcp SDK"):
            mcp_sdk.require_mcp2("the MCP server")


def test_an_mcp_1_environment_is_refused_with_the_version_and_the_way_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mcp_sdk.metadata, "version", lambda name: "1.21.0")
    with pytest.raises(ConfigError) as info:
        mcp_sdk.require_mcp2("the MCP server")
    message = str(info.value)
    assert "the MCP server needs the mcp SDK >= 2.3" in message
    assert "mcp 1.21.0" in message
    assert "uvx --from py-code-mode py-code-mode-mcp" in message
    assert "MCP tools (`type: mcp`) work here" in message


def test_a_missing_sdk_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mcp_sdk.metadata, "version", missing)
    assert mcp_sdk.mcp_major() is None
    with pytest.raises(ConfigError, match="no mcp package"):
        mcp_sdk.require_mcp2("MCP tools")


def test_mcp_tools_accept_the_installed_sdk_of_either_line() -> None:
    mcp_sdk.require_mcp_client("MCP tools")  # 1.21 in .ci/mcp1.sh, 2.x in the main run


@pytest.mark.parametrize("version", ["1.21.0", "1.25.1", "2.3.0"])
def test_mcp_tools_accept_1_21_and_later(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setattr(mcp_sdk.metadata, "version", lambda name: version)
    mcp_sdk.require_mcp_client("MCP tools")


@pytest.mark.parametrize("version", ["1.20.0", "1.21.0rc1", "0.9", "not-a-version"])
def test_mcp_tools_refuse_an_older_or_unreadable_sdk_naming_it_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(mcp_sdk.metadata, "version", lambda name: version)
    with pytest.raises(ConfigError) as info:
        mcp_sdk.require_mcp_client("the MCP tool in tools/x.yaml")
    message = str(info.value)
    assert "the MCP tool in tools/x.yaml needs the mcp SDK >= 1.21 (1.x or 2.x)" in message
    assert f"mcp {version}" in message
    assert "pip install 'mcp>=1.21'" in message


def test_mcp_tools_refuse_a_missing_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(mcp_sdk.metadata, "version", missing)
    with pytest.raises(ConfigError, match="no mcp package"):
        mcp_sdk.require_mcp_client("MCP tools")
