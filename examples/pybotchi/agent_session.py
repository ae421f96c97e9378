"""A PyBotchi agent running Python in a py-code-mode Session of its own process (no MCP).

Variables persist across ``context.start()`` calls, unlike over MCP, and no server
is needed. ``python agent_session.py "add up 1, 2 and 3" "multiply the total by ten"``
Model: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL. Library: CODE_MODE_BASE (~/.code-mode).
"""

import sys
from asyncio import run
from os import getenv
from typing import ClassVar

from langchain_openai import ChatOpenAI
from pybotchi import LLM, Action, ActionReturn, ChatRole, Context

from py_code_mode import Session
from py_code_mode.integrations.pybotchi import run_code_action

LLM.add(
    base=ChatOpenAI(
        model=getenv("MODEL", "gpt-4.1"),
        base_url=getenv("OPENAI_BASE_URL"),
        api_key=getenv("OPENAI_API_KEY", "not-needed"),  # type: ignore[arg-type]
        temperature=0,
    )
)

session = Session.from_base(getenv("CODE_MODE_BASE", "~/.code-mode"))


class CodeAgent(Action):
    """Answer the user by running Python in a persistent py-code-mode session."""

    RunCode: ClassVar = run_code_action(session)

    async def post(self, context: Context) -> ActionReturn:
        """Let the model answer from the tool results."""
        message = await context.llm.ainvoke(context.prompts)
        await context.add_message(ChatRole.ASSISTANT, message.text)
        return ActionReturn.END


async def main(questions: list[str]) -> None:
    """Each question is its own context.start(); the session spans them all."""
    async with session:
        for question in questions:
            context = Context(
                prompts=[
                    {"role": ChatRole.SYSTEM, "content": "Use RunCode to compute answers."},
                    {"role": ChatRole.USER, "content": question},
                ]
            )
            await context.start(CodeAgent)
            print(context.prompts[-1]["content"], flush=True)


if __name__ == "__main__":
    run(main(sys.argv[1:] or ["add up the numbers 1, 2 and 3"]))
