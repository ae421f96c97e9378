"""The repository's example tools, bound to a test's own directory.

The shipped files declare ``paths: ["."]`` (the host's working directory); tests
point them at a temporary folder instead, and may open loopback for curl to
reach a local test server. Everything else is used exactly as shipped.
"""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_TOOLS = Path(__file__).resolve().parents[1] / "tools"


def shipped_tools(target: Path, root: Path, *, allow_loopback: bool = False) -> Path:
    """Copy the example tool files into ``target`` with their ``paths`` set to ``[root]``."""
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(REPO_TOOLS.glob("*.yaml")):
        data = yaml.safe_load(source.read_text())
        if "paths" in data:
            data["paths"] = [str(root)]
        if allow_loopback and data.get("network"):
            data["allow_addresses"] = ["127.0.0.0/8"]
        (target / source.name).write_text(yaml.safe_dump(data, sort_keys=False))
    return target
