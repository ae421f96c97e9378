"""From inside the container executor: quota and approval refusals keep their classes."""

from __future__ import annotations

from pathlib import Path

from py_code_mode import ApprovalRequest, FileStorage, Quotas, Session
from tests.execution._container_support import container_executor

GUARDED = """\
name: guarded
description: Print words, after a person said yes
confirm: true
command: echo
separator: null
schema:
  positional:
    - {name: words, type: array}
"""

CODE = """
out = []
try:
    artifacts.save('big', 'x' * 101)
except ArtifactQuotaError as exc:
    out.append([type(exc).__name__, exc.quota, exc.limit, isinstance(exc, ArtifactError)])
for word in ('yes', 'no'):
    try:
        out.append(tools.guarded(words=[word]).strip())
    except ToolDeniedError as exc:
        out.append([type(exc).__name__, isinstance(exc, ToolError), exc.tool])
out
"""


async def test_refusals_reach_agent_code_in_the_container_with_their_classes(
    tmp_path: Path,
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "guarded.yaml").write_text(GUARDED)

    def approve(request: ApprovalRequest) -> bool:
        return request.arguments["words"] == ["yes"]

    executor = container_executor(tools)
    storage = FileStorage(tmp_path / "lib")
    quotas = Quotas(max_artifact_bytes=100)
    async with Session(storage, executor, quotas=quotas, approve=approve) as session:
        result = await session.run(CODE, timeout=120)
    assert result.error is None, result.error
    assert result.value == [
        ["ArtifactQuotaError", "max_artifact_bytes", 100, True],
        "yes",
        ["ToolDeniedError", True, "guarded"],
    ]
    assert not (tmp_path / "lib" / "artifacts" / "big").exists()
