"""A pygents agent whose tool runs Python in a py-code-mode session.

pygents runs tools and leaves the model loop to you: here an OpenAI-compatible
model (streamed) picks tool calls, each becomes a Turn for the agent, and the
results go back to the model. One Session serves the whole conversation, so
variables persist between turns.

``python agent.py "add up the numbers 1, 2 and 3" "multiply the total by ten"``
Model: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL. Library: CODE_MODE_BASE (~/.code-mode).
"""

import asyncio
import json
import sys
from os import getenv

from openai import AsyncOpenAI
from pygents import Agent, Turn, tool

from py_code_mode import Session
from py_code_mode.integrations import call_tool, run_code_spec

session = Session.from_base(getenv("CODE_MODE_BASE", "~/.code-mode"))
model = AsyncOpenAI(api_key=getenv("OPENAI_API_KEY", "not-needed"))


@tool()
async def run_code(code: str) -> str:
    """Run Python in the persistent session and return what the model should read."""
    return await call_tool(session, "run_code", {"code": code})


agent = Agent("coder", "Answers questions by running Python", [run_code])


async def ask(messages: list[dict], question: str) -> str:
    """Add a question to the conversation and loop until the model answers."""
    messages.append({"role": "user", "content": question})
    while True:
        async with model.chat.completions.stream(
            model=getenv("MODEL", "gpt-4.1"), messages=messages, tools=[run_code_spec()]
        ) as stream:
            async for event in stream:
                if event.type == "content.delta":
                    print(event.delta, end="", flush=True)
            message = (await stream.get_final_completion()).choices[0].message
        messages.append(message.model_dump(exclude_none=True))
        if not message.tool_calls:
            print()
            return message.content or ""
        for call in message.tool_calls:
            # run_code may take up to 60 s, which is also a Turn's default timeout.
            turn = Turn(call.function.name, timeout=90, kwargs=json.loads(call.function.arguments))
            await agent.put(turn)
        results = [value async for _, value in agent.run()]
        for call, value in zip(message.tool_calls, results, strict=True):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": value})


async def main(questions: list[str]) -> None:
    """Ask each question in one conversation."""
    messages: list[dict] = [
        {
            "role": "system",
            "content": "Use run_code to compute answers with Python. Save reusable code "
            "as workflows and data as artifacts.",
        }
    ]
    async with session:
        for question in questions:
            await ask(messages, question)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["add up the numbers 1, 2 and 3"]))
