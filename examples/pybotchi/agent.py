"""A PyBotchi agent that runs Python through py-code-mode's MCP server.

Start the server first (its own environment is fine):

    py-code-mode-mcp --transport http --port 8765 --base ~/.code-mode

then ``python agent.py "add up the numbers 1, 2 and 3"``. The model is any
OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL.
"""

import sys
from asyncio import run
from os import getenv

from langchain_openai import ChatOpenAI
from pybotchi import LLM, ActionReturn, ChatRole
from pybotchi.mcp import MCPAction, MCPConnection, MCPContext, MCPIntegration

LLM.add(
    base=ChatOpenAI(
        model=getenv("MODEL", "gpt-4.1"),
        base_url=getenv("OPENAI_BASE_URL"),
        api_key=getenv("OPENAI_API_KEY", "not-needed"),  # type: ignore[arg-type]
        streaming=getenv("STREAM", "") == "1",
        temperature=0,
    )
)

CODE_MODE_URL = getenv("CODE_MODE_URL", "http://127.0.0.1:8765/mcp")


class CodeAgent(MCPAction):
    """Answer the user by running Python in a persistent py-code-mode session."""

    __mcp_connections__ = [
        MCPConnection(
            "code_mode",
            "SHTTP",
            CODE_MODE_URL,
            # PyBotchi waits 30 s by default; run_code may take up to the server's 60 s.
            timeout=90.0,
            # PyBotchi names tools in CamelCase: the server's run_code is RunCode here.
            allowed_tools={"RunCode": True, "SearchWorkflows": True},
        )
    ]

    async def post(self, context: MCPContext) -> ActionReturn:
        """Let the model answer from the tool results."""
        message = await context.llm.ainvoke(context.prompts)
        await context.add_usage(self, context.llm_model, message.usage_metadata, "answer")
        await context.add_message(ChatRole.ASSISTANT, message.text)
        return ActionReturn.END


async def ask(question: str) -> str:
    """One conversation: each context.start() opens a new MCP session."""
    integrations: dict[str, MCPIntegration] = {"code_mode": {}}
    context = MCPContext(
        prompts=[
            {
                "role": ChatRole.SYSTEM,
                "content": "Use RunCode to compute answers with Python. Save reusable code "
                "as workflows and data as artifacts.",
            },
            {"role": ChatRole.USER, "content": question},
        ],
        integrations=integrations,
    )
    await context.start(CodeAgent)
    return context.prompts[-1]["content"]


if __name__ == "__main__":
    for question in sys.argv[1:] or ["add up the numbers 1, 2 and 3"]:
        print(run(ask(question)))
