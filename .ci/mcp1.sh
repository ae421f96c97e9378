#!/usr/bin/env bash
# The library core under mcp 1.x: frameworks such as mbxai (typing-inspection<=0.4.0
# -> mcp 1.21) and pybotchi[mcp] (needs mcp<2) hold the SDK below 2, and py-code-mode
# must install and run beside them. `uv run --with 'mcp<2'` does not give a clean
# 1.x environment (it layers 1.x over the locked 2.x packages), so this builds a venv
# of its own, resolved fresh with the oldest 1.x that mbxai allows.
# The MCP server and MCP tools need mcp 2 and are covered by the main run; here they
# must refuse cleanly, which tests/_private/test_mcp_sdk.py checks.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PY_CODE_MODE_CI_CACHE:-$HOME/.cache/py-code-mode}/ci-mcp1-venv"
uv venv --quiet --allow-existing --python "$(command -v python3)" "$venv"
VIRTUAL_ENV="$venv" uv pip install --quiet -e '.[redis]' 'mcp==1.21.0' \
  'typing-inspection==0.4.0' pytest pytest-asyncio pytest-timeout
"$venv/bin/python" -c 'import importlib.metadata as m; v = m.version("mcp"); assert v.startswith("1."), v; print("mcp", v)'
"$venv/bin/python" -m pytest -q -p no:cacheprovider -p no:randomly \
  tests/test_session.py tests/integrations/test_specs.py tests/integrations/test_sync.py \
  tests/integrations/test_call_tool.py \
  tests/_private/test_mcp_sdk.py tests/tools/test_cli.py tests/tools/test_http.py
