"""``python -m py_code_mode.mcp_server`` runs the MCP server."""

from py_code_mode.mcp_server import main

if __name__ == "__main__":
    main()
