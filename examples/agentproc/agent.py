"""An agentproc agent: each turn is a new process that runs Python through py-code-mode.

The bridge starts this script once per message (``agentproc -p profile.yaml
--prompt "..."``). A process opens a Session, lets the model call run_code until it
answers, and exits: variables end with the turn, while the conversation (agentproc's
history files) and the library (workflows, artifacts under CODE_MODE_BASE) carry on
to the next one. Model: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL.
"""

import uuid
from os import getenv

from agentproc import AgentResult, HistoryEntry, append_history, create_profile, load_history
from openai import AsyncOpenAI

from py_code_mode import Session
from py_code_mode.integrations import call_tool, run_code_spec

SYSTEM = (
    "Use run_code to compute answers with Python. Variables do not survive between "
    "messages; save reusable code as workflows and data as artifacts."
)


async def handler(ctx):
    """One turn: answer the message, running code through py-code-mode as needed."""
    session_id = ctx.session_id or uuid.uuid4().hex
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": e.role, "content": e.content} for e in load_history(session_id)]
    messages.append({"role": "user", "content": ctx.message})

    model = AsyncOpenAI(api_key=getenv("OPENAI_API_KEY", "not-needed"))
    async with Session.from_base(getenv("CODE_MODE_BASE", "~/.code-mode")) as session:
        while True:
            response = await model.chat.completions.create(
                model=getenv("MODEL", "gpt-4.1"), messages=messages, tools=[run_code_spec()]
            )
            message = response.choices[0].message
            messages.append(message.model_dump(exclude_none=True))
            if not message.tool_calls:
                break
            for call in message.tool_calls:
                result = await call_tool(session, call.function.name, call.function.arguments)
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    reply = message.content or ""
    append_history(
        session_id,
        [
            HistoryEntry(role="user", content=ctx.message),
            HistoryEntry(role="assistant", content=reply),
        ],
    )
    return AgentResult(response=reply, session_id=session_id)


create_profile(handler)
