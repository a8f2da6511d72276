"""One loopback server speaking the three AI vendors' HTTP APIs as PocketPing's providers call them.

- OpenAI: ``POST {base}/openai/v1/chat/completions``, ``Authorization: Bearer <key>``;
- Anthropic: ``POST {base}/anthropic/v1/messages``, ``x-api-key`` and ``anthropic-version``;
- Gemini: ``POST {base}/gemini/v1beta/models/{model}:generateContent?key=<key>``.

Each checks the key as its vendor does (401/403 with the vendor's error shape), and the request body's shape
(400), then answers ``reply`` in the vendor's response shape. ``fail_next`` makes the next calls answer a
server error; ``stall_next`` makes the next call hang until ``release`` (its client killed meanwhile).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from tests.standins import Answer, StandIn

OPENAI, ANTHROPIC, GEMINI = "openai", "anthropic", "gemini"
_GEMINI_PATH = re.compile(r"/gemini/v1beta/models/([\w.-]+):generateContent")


class AiVendorStandIn(StandIn):
    query_token = "key"

    def __init__(self, api_key: str, reply: str = "Your parcel left our warehouse this morning.") -> None:
        super().__init__(tokens={api_key})
        self.reply = reply
        self._errors: list[int] = []
        self._stall = threading.Event()
        self._stalling = False
        self.stalled = threading.Event()  # set once the stalled call has arrived

    def base_url_of(self, vendor: str) -> str:
        """What ``AI_BASE_URL`` is for this vendor."""
        return f"{self.base_url}/{vendor}/v1beta" if vendor == GEMINI else f"{self.base_url}/{vendor}/v1"

    def fail_next(self, *statuses: int) -> None:
        """The next calls answer these statuses, one each, before answering normally again."""
        self._errors.extend(statuses)

    def stall_next(self) -> None:
        self._stalling = True

    def release(self) -> None:
        self._stall.set()

    def route(self, method: str, path: str, headers: dict[str, str]) -> tuple[str, str | None]:
        if method == "POST" and path == "/openai/v1/chat/completions":
            bearer = headers.get("authorization", "")
            return OPENAI, bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else None
        if method == "POST" and path == "/anthropic/v1/messages":
            return ANTHROPIC, headers.get("x-api-key")
        if method == "POST" and _GEMINI_PATH.fullmatch(path):
            return GEMINI, None  # the key is in the query (query_token)
        return f"{method} {path}", None

    def answer(self, name: str, method: str, path: str, body: Any, token: str | None) -> Answer:
        if name not in (OPENAI, ANTHROPIC, GEMINI):
            return 404, {"error": {"message": "Unknown request URL"}}
        if token not in (self.tokens or set()):
            return _refused(name)
        if (problem := _shape_problem(name, body)) is not None:
            return 400, {"error": {"message": problem}}
        if self._stalling:
            self._stalling = False
            self.stalled.set()
            self._stall.wait(120)
            return 500, {"error": {"message": "stalled"}}
        if self._errors:
            status = self._errors.pop(0)
            return status, {"error": {"message": "The server had an error while processing your request"}}
        return 200, _reply(name, self.reply)


def _refused(vendor: str) -> Answer:
    if vendor == OPENAI:
        return 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
    if vendor == ANTHROPIC:
        return 401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
    return 403, {"error": {"code": 403, "message": "API key not valid", "status": "PERMISSION_DENIED"}}


def _shape_problem(vendor: str, body: Any) -> str | None:
    """What the vendor would refuse in this request body, or None."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    if vendor == GEMINI:
        contents = body.get("contents")
        ok = (
            isinstance(contents, list)
            and contents
            and all(c.get("role") in ("user", "model") and isinstance(c.get("parts"), list) for c in contents)
        )
        return None if ok else "contents: each needs a role (user, model) and parts"
    messages = body.get("messages")
    roles = ("system", "user", "assistant") if vendor == OPENAI else ("user", "assistant")
    if not isinstance(body.get("model"), str) or not isinstance(messages, list) or not messages:
        return "model and messages are required"
    if not all(m.get("role") in roles and isinstance(m.get("content"), str) for m in messages):
        return f"messages: each needs a role ({', '.join(roles)}) and string content"
    if vendor == ANTHROPIC and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: field required"
    return None


def _reply(vendor: str, text: str) -> Any:
    if vendor == OPENAI:
        return {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
        }
    if vendor == ANTHROPIC:
        return {"type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]}
    return {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}]}
