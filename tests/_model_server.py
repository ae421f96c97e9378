"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1 that plays the model.

The framework examples talk to it exactly as they would to a hosted model, so each
runs offline and deterministically. The script is a list of rules:

- when the conversation's last message is the user's and contains a rule's
  ``when`` text, the model calls the offered tool whose name reads ``run_code``
  (any casing or separators, so PyBotchi's ``RunCode`` matches) with the rule's
  code;
- when the last message is a tool result, the model answers with
  ``answer(tool_text)``: so the answer proves the result came back to it;
- anything else gets a plain reply saying it has no rule.

Replies are plain JSON or, when the request says ``"stream": true``, server-sent
events with content and tool-call deltas, as the OpenAI API sends them. Every
request body is kept in :attr:`ScriptedModel.requests` for assertions.

Run standalone (``python tests/_model_server.py --port 8000 SCRIPT.json``) to try an
example by hand.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Rule", "ScriptedModel", "total_answer"]

MODEL = "scripted-model"


def total_answer(tool_text: str) -> str:
    """The final answer the scripts use: the ``total=N`` the code printed, or the failure."""
    found = re.findall(r"total=(-?\d+)", tool_text)
    if found:
        return f"The total is {found[-1]}."
    return f"The code did not print a total. Tool said: {tool_text[:2000]}"


@dataclass
class Rule:
    """When the user's message contains ``when``, call ``run_code`` with ``code``."""

    when: str
    code: str
    answer: Callable[[str], str] = total_answer


def _normalized(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


@dataclass
class ScriptedModel:
    """The server; use as a context manager, then point a client at :attr:`base_url`."""

    rules: list[Rule]
    requests: list[dict[str, Any]] = field(default_factory=list)
    chunk_size: int = 7

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, what OpenAI clients take as ``base_url``."""
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedModel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1 (a free port unless ``port`` is given)."""
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                else:
                    self._json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._json(400, {"error": {"message": "body is not JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                model.requests.append(body)
                message = model.reply(body)
                if body.get("stream"):
                    self._stream(message, body)
                else:
                    self._json(200, model.completion(message, body))

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, message: dict[str, Any], body: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in model.chunks(message, body):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the model --------------------------------------------------------------------
    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The assistant message for a request, following the rules."""
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            user = next((_text_of(m) for m in reversed(messages) if m.get("role") == "user"), "")
            rule = self._rule_for(user)
            answer = rule.answer if rule else total_answer
            return {"role": "assistant", "content": answer(_text_of(last))}
        if last.get("role") == "user":
            rule = self._rule_for(_text_of(last))
            tool = self._run_code_name(body)
            if rule is not None and tool is not None:
                call = {
                    "id": f"call_{uuid.uuid4().hex[:16]}",
                    "type": "function",
                    "function": {"name": tool, "arguments": json.dumps({"code": rule.code})},
                }
                return {"role": "assistant", "content": None, "tool_calls": [call]}
            if rule is not None:
                offered = [self._name_of(t) for t in body.get("tools") or []]
                return {"role": "assistant", "content": f"no run_code tool offered: {offered}"}
        return {"role": "assistant", "content": "I have no scripted reply for this."}

    def _rule_for(self, text: str) -> Rule | None:
        return next((r for r in self.rules if r.when in text), None)

    @staticmethod
    def _name_of(tool: dict[str, Any]) -> str:
        return str((tool.get("function") or {}).get("name", ""))

    def _run_code_name(self, body: dict[str, Any]) -> str | None:
        for tool in body.get("tools") or []:
            name = self._name_of(tool)
            if _normalized(name).endswith("runcode"):
                return name
        return None

    def completion(self, message: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """A whole ``chat.completion`` object."""
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }

    def chunks(self, message: dict[str, Any], body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``chat.completion.chunk`` objects that add up to ``message``."""
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model") or MODEL,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        text = message.get("content") or ""
        for i in range(0, len(text), self.chunk_size):
            yield chunk({"content": text[i : i + self.chunk_size]})
        for index, call in enumerate(message.get("tool_calls") or []):
            fn = call["function"]
            yield chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": fn["name"], "arguments": ""},
                        }
                    ]
                }
            )
            args = fn["arguments"]
            step = max(self.chunk_size * 4, 1)
            for i in range(0, len(args), step):
                yield chunk(
                    {
                        "tool_calls": [
                            {"index": index, "function": {"arguments": args[i : i + step]}}
                        ]
                    }
                )
        yield chunk({}, "tool_calls" if message.get("tool_calls") else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
            yield {**base, "choices": [], "usage": usage}


def main() -> None:
    """Serve a script file ``[{"when": ..., "code": ...}]`` until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("script", help="JSON list of {when, code}")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    with open(args.script, encoding="utf-8") as f:
        rules = [Rule(r["when"], r["code"]) for r in json.load(f)]
    model = ScriptedModel(rules)
    model.start(args.port)
    print(f"scripted model on {model.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        model.stop()


if __name__ == "__main__":
    main()
