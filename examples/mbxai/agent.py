"""An MBX AI ToolClient agent whose one tool runs Python in a py-code-mode session.

``python agent.py "add up the numbers 1, 2 and 3" "multiply the total by ten"``
asks the questions in one conversation; the session (its variables too) lives as
long as the process. The model is any OpenAI-compatible endpoint:
OPENAI_BASE_URL, OPENAI_API_KEY, MODEL. The library (workflows, artifacts) is
CODE_MODE_BASE, default ~/.code-mode.
"""

import sys
from os import getenv

from mbxai import OpenRouterClient, ToolClient

from py_code_mode import Session
from py_code_mode.integrations import SyncSession, run_code_spec

# ToolClient.chat is synchronous and calls tools without awaiting them, so the tool
# is a plain function over a SyncSession (its own event-loop thread).
code_mode = SyncSession(Session.from_base(getenv("CODE_MODE_BASE", "~/.code-mode")))


def run_code(code: str) -> str:
    """Run Python in the persistent session and return what the model should read."""
    return code_mode.run_code(code)


spec = run_code_spec()["function"]
client = OpenRouterClient(
    token=getenv("OPENAI_API_KEY", "not-needed"),
    model=getenv("MODEL", "openai/gpt-4.1"),
    base_url=getenv("OPENAI_BASE_URL"),
)
tool_client = ToolClient(client)
# The spec's schema is flat and strict already, so MBX AI's converter leaves it as is.
tool_client.register_tool(spec["name"], spec["description"], run_code, spec["parameters"])


def main(questions: list[str]) -> None:
    """Ask each question in one conversation and print the answers."""
    messages = [
        {
            "role": "system",
            "content": "Use run_code to compute answers with Python. Save reusable code "
            "as workflows and data as artifacts.",
        }
    ]
    with code_mode:
        for question in questions:
            messages.append({"role": "user", "content": question})
            # chat() appends the tool calls, tool results and the answer to messages.
            response = tool_client.chat(messages)
            print(response.choices[0].message.content, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["add up the numbers 1, 2 and 3"])
