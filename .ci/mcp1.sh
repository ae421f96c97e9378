#!/usr/bin/env bash
# py-code-mode under mcp 1.x: frameworks such as mbxai (typing-inspection<=0.4.0
# -> mcp 1.21) and pybotchi[mcp] (needs mcp<2) hold the SDK below 2, and py-code-mode
# must install and run beside them. `uv run --with 'mcp<2'` does not give a clean
# 1.x environment (it layers 1.x over the locked 2.x packages), so this builds a venv
# of its own, resolved fresh with the oldest 1.x that mbxai allows.
#
# Covered here: the library core, and the MCP tool adapter (`type: mcp`, through
# src/py_code_mode/_private/mcp_client.py) against real servers over stdio,
# streamable HTTP and SSE. tests/tools/test_mcp.py runs three times, the python that
# starts its servers chosen by PY_CODE_MODE_TEST_MCP_SERVER_PYTHON: a 1.x client with
# 1.x servers; a 1.x client with 2.x servers (the mix framework users meet; this
# includes py-code-mode's own MCP server as a tool); a 2.x client (the locked
# environment) with 1.x servers (the many servers still built on FastMCP 1.x).
# Last, the newest 1.x that pybotchi's example pins (1.30) runs the same file: later
# 1.x releases deprecate the streamable-HTTP client 1.21 has, and the adapter takes
# the newer one there (DeprecationWarnings are errors in that run).
# Not covered: the MCP server itself needs mcp 2 (MCPServer, its middleware,
# mcp_types, the auth settings); here it must refuse with the way out
# (`uvx --from py-code-mode py-code-mode-mcp`), which tests/_private/test_mcp_sdk.py checks.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PY_CODE_MODE_CI_CACHE:-$HOME/.cache/py-code-mode}/ci-mcp1-venv"
uv venv --quiet --allow-existing --python "$(command -v python3)" "$venv"
VIRTUAL_ENV="$venv" uv pip install --quiet -e '.[redis]' 'mcp==1.21.0' \
  'typing-inspection==0.4.0' pytest pytest-asyncio pytest-timeout
"$venv/bin/python" -c 'import importlib.metadata as m; v = m.version("mcp"); assert v.startswith("1."), v; print("mcp", v)'
pytest=("$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:randomly)
"${pytest[@]}" \
  tests/test_session.py tests/integrations/test_specs.py tests/integrations/test_sync.py \
  tests/integrations/test_call_tool.py \
  tests/_private/test_mcp_sdk.py \
  tests/tools/test_cli.py tests/tools/test_http.py tests/tools/test_mcp.py
mcp2_python="$(uv run --frozen python -c 'import sys; print(sys.executable)')"
"$mcp2_python" -c 'import importlib.metadata as m; v = m.version("mcp"); assert v.startswith("2."), v'
echo "mcp 1 client, servers on mcp 2"
PY_CODE_MODE_TEST_MCP_SERVER_PYTHON="$mcp2_python" "${pytest[@]}" tests/tools/test_mcp.py
echo "mcp 2 client, servers on mcp 1"
PY_CODE_MODE_TEST_MCP_SERVER_PYTHON="$venv/bin/python" \
  "$mcp2_python" -m pytest -q -p no:cacheprovider -p no:randomly tests/tools/test_mcp.py
echo "mcp 1.30 client and servers"
venv130="${PY_CODE_MODE_CI_CACHE:-$HOME/.cache/py-code-mode}/ci-mcp130-venv"
uv venv --quiet --allow-existing --python "$(command -v python3)" "$venv130"
VIRTUAL_ENV="$venv130" uv pip install --quiet -e . 'mcp==1.30.0' pytest pytest-asyncio pytest-timeout
"$venv130/bin/python" -m pytest -q -p no:cacheprovider -p no:randomly -W error::DeprecationWarning \
  tests/tools/test_mcp.py
