"""The run_code reply: the cut output, the saved whole, and how many are kept."""

from __future__ import annotations

from pathlib import Path

from mcp_types import TextContent

from py_code_mode import ExecutionResult, Session
from py_code_mode.mcp_server.run_reply import KEEP_OUTPUTS, OutputSaves, run_reply


async def test_the_whole_output_is_saved_and_only_the_newest_outputs_are_kept(
    tmp_path: Path,
) -> None:
    saves = OutputSaves()
    names: list[str] = []
    async with Session.inprocess(tmp_path) as session:
        await session.save_artifact("mine.txt", "agent data")
        for i in range(KEEP_OUTPUTS + 3):
            result = ExecutionResult(stdout=f"run {i}\n" + "x" * 30_000)
            reply = await run_reply(session, result, saves=saves, stdout_limit=1_000)
            assert reply.structured_content is not None
            names.append(reply.structured_content["output_artifact"])
            await saves.wait()
        kept = {a["name"] for a in await session.list_artifacts()}
        newest = await session.load_artifact(names[-1])
    assert kept == {"mine.txt", *names[-KEEP_OUTPUTS:]}
    assert newest == f"run {KEEP_OUTPUTS + 2}\n" + "x" * 30_000


async def test_a_failed_save_is_reported_in_the_next_reply(tmp_path: Path) -> None:
    saves = OutputSaves()
    async with Session.inprocess(tmp_path) as session:
        await session.save_artifact("run-output", "a file where the folder would go")
        first = await run_reply(
            session, ExecutionResult(stdout="y" * 5_000), saves=saves, stdout_limit=100
        )
        await saves.wait()
        second = await run_reply(session, ExecutionResult(stdout="ok\n"), saves=saves)
    assert first.structured_content is not None
    block = second.content[0]
    assert isinstance(block, TextContent)
    assert first.structured_content["output_artifact"] in block.text
    assert "could not be saved" in block.text
