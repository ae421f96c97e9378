"""The scripted model speaks the chat-completions wire format, plain and streamed."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from tests._model_server import Rule, ScriptedModel

TOOLS = [{"type": "function", "function": {"name": "RunCode", "parameters": {}}}]


def _post(model: ScriptedModel, body: dict[str, Any]) -> bytes:
    request = urllib.request.Request(
        f"{model.base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def test_a_user_message_matching_a_rule_gets_a_run_code_call_then_an_answer() -> None:
    with ScriptedModel([Rule("add", "print(f'total={1 + 2}')")]) as model:
        first = json.loads(
            _post(model, {"messages": [{"role": "user", "content": "add it"}], "tools": TOOLS})
        )
        message = first["choices"][0]["message"]
        assert first["choices"][0]["finish_reason"] == "tool_calls"
        call = message["tool_calls"][0]
        assert call["function"]["name"] == "RunCode"  # matched whatever the casing
        assert json.loads(call["function"]["arguments"]) == {"code": "print(f'total={1 + 2}')"}
        messages = [
            {"role": "user", "content": "add it"},
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "stdout:\ntotal=3"},
        ]
        second = json.loads(_post(model, {"messages": messages}))
        assert second["choices"][0]["message"]["content"] == "The total is 3."
        assert len(model.requests) == 2


def test_streamed_replies_add_up_to_the_same_tool_call_and_text() -> None:
    code = "x = 'a long enough line of code to be split into several chunks'"
    with ScriptedModel([Rule("go", code)], chunk_size=3) as model:
        body = {
            "messages": [{"role": "user", "content": "go"}],
            "tools": TOOLS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        events = [
            line.removeprefix(b"data: ")
            for line in _post(model, body).splitlines()
            if line.startswith(b"data: ")
        ]
        assert events[-1] == b"[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        arguments = "".join(
            d["function"].get("arguments", "")
            for c in chunks
            for choice in c["choices"]
            for d in choice["delta"].get("tool_calls", [])
        )
        assert json.loads(arguments) == {"code": code}
        assert (
            sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("tool_calls"))
            > 2
        )
        assert chunks[-1]["usage"]["total_tokens"] == 20
        body = {
            "messages": [{"role": "user", "content": "go"}, {"role": "tool", "content": "total=5"}],
            "stream": True,
        }
        text = "".join(
            json.loads(line.removeprefix(b"data: "))["choices"][0]["delta"].get("content") or ""
            for line in _post(model, body).splitlines()
            if line.startswith(b"data: {")
        )
        assert text == "The total is 5."


def test_without_a_matching_rule_or_tool_the_model_says_so() -> None:
    with ScriptedModel([Rule("add", "1")]) as model:
        reply = json.loads(_post(model, {"messages": [{"role": "user", "content": "add"}]}))
        assert "no run_code tool offered" in reply["choices"][0]["message"]["content"]
        reply = json.loads(_post(model, {"messages": [{"role": "user", "content": "hi"}]}))
        assert "no scripted reply" in reply["choices"][0]["message"]["content"]
