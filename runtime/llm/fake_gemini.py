"""A local fake of Gemini's REST endpoint, so the real google-genai client runs offline.

Written by hand on the stdlib `http.server`: no library serves Gemini's `generateContent` REST
shape (candidates / parts / usageMetadata, Google error bodies), and the point is to exercise the
SDK's real HTTP path rather than mock it. Tests script the answers and inject faults; the default
benchmark suite uses the deterministic default script when no API key is set.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATH = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):generateContent$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer: text (and/or function calls), an HTTP error, or a raw (malformed) body."""

    text: str | None = None
    status: int = 200
    message: str = ""  # error message for status != 200
    raw: bytes | None = None  # sent verbatim instead of a JSON body
    delay_s: float = 0.0  # wait this long before answering (to trigger client timeouts)
    function_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str = "STOP"

    @classmethod
    def error(cls, status: int, message: str = "", delay_s: float = 0.0) -> Reply:
        return cls(status=status, message=message or f"fake error {status}", delay_s=delay_s)

    @classmethod
    def malformed(cls, body: bytes = b'{"candidates": [ this is not JSON') -> Reply:
        return cls(raw=body)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """What the SDK sent: path, model, API key header and the parsed JSON body (None if unparsable)."""

    path: str
    model: str
    api_key: str | None
    body: dict[str, Any] | None

    @property
    def prompt(self) -> str:
        """All user text parts joined by newlines (what echo answers use)."""
        return _user_text(self.body or {})


Script = Callable[[RecordedRequest], Reply | str] | Iterable[Reply | str] | None


def _user_text(body: dict[str, Any]) -> str:
    texts = []
    for content in body.get("contents") or []:
        if isinstance(content, dict) and content.get("role", "user") == "user":
            texts += [p["text"] for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p]
    return "\n".join(texts)


def _count_tokens(text: str) -> int:
    """Deterministic stand-in for a tokenizer: one token per whitespace-separated word, at least 1."""
    return max(1, len(text.split()))


def echo(request: RecordedRequest) -> Reply:
    """The default script: a deterministic answer derived from the prompt, cut to maxOutputTokens."""
    words = f"echo: {request.prompt}".split()
    limit = ((request.body or {}).get("generationConfig") or {}).get("maxOutputTokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return Reply(text=" ".join(words[:limit]), finish_reason="MAX_TOKENS")
    return Reply(text=" ".join(words))


class FakeGemini:
    """`POST /{v1,v1beta,v1alpha}/models/{model}:generateContent` on 127.0.0.1 (ephemeral port), in a thread.

    `script`: None (echo), a callable `RecordedRequest -> Reply | str`, or a sequence of replies
    answered in order (a request past its end gets HTTP 500 naming the exhaustion). With
    `api_key` set, any other key is refused the way Gemini does it (400, "API key not valid").
    """

    def __init__(self, script: Script = None, api_key: str | None = None) -> None:
        if script is None:
            self._next: Callable[[RecordedRequest], Reply | str] = echo
        elif callable(script):
            self._next = script
        else:
            replies = list(script)
            self._next = self._from_list(replies)
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval only makes close() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-gemini", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        """Stop serving; delayed answers in progress are cut short."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeGemini:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _from_list(self, replies: list[Reply | str]) -> Callable[[RecordedRequest], Reply | str]:
        position = iter(range(len(replies)))

        def next_reply(_: RecordedRequest) -> Reply | str:
            index = next(position, None)
            if index is None:
                return Reply.error(500, f"FakeGemini: script exhausted after {len(replies)} replies")
            return replies[index]

        return next_reply

    def _answer(self, path: str, api_key: str | None, raw_body: bytes) -> tuple[int, bytes]:
        match = _PATH.match(path)
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        if match is None:
            return _error_body(
                404, f"FakeGemini serves only POST /v1beta/models/{{model}}:generateContent, not {path}"
            )
        request = RecordedRequest(path, match.group(2), api_key, body if isinstance(body, dict) else None)
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
            if self.api_key is not None and api_key != self.api_key:
                return _error_body(400, "API key not valid. Please pass a valid API key.")
            if request.body is None:
                return _error_body(400, "Invalid JSON payload received.")
            reply = self._next(request)  # under the lock: list scripts answer in arrival order
        if isinstance(reply, str):
            reply = Reply(text=reply)
        if reply.delay_s and self._closing.wait(reply.delay_s):
            return _error_body(503, "FakeGemini is shutting down")
        if reply.raw is not None:
            return 200, reply.raw
        if reply.status != 200:
            return _error_body(reply.status, reply.message)
        return 200, json.dumps(_response_json(request, reply, number)).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: avoid a 40 ms delayed ACK

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, payload = fake._answer(self.path, self.headers.get("x-goog-api-key"), raw)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout); nothing to answer

            def log_message(self, *args: object) -> None:
                pass  # tests and benchmarks must stay quiet

        return Handler


def _error_body(status: int, message: str) -> tuple[int, bytes]:
    name = _STATUS_NAMES.get(status, HTTPStatus(status).phrase.upper().replace(" ", "_"))
    return status, json.dumps({"error": {"code": status, "message": message, "status": name}}).encode()


def _response_json(request: RecordedRequest, reply: Reply, number: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if reply.text is not None:
        parts.append({"text": reply.text})
    parts += [{"functionCall": {"name": c["name"], "args": c.get("args", {})}} for c in reply.function_calls]
    body = request.body or {}
    system = " ".join(
        p.get("text", "")
        for p in (body.get("systemInstruction") or {}).get("parts") or []
        if isinstance(p, dict)
    )
    prompt_tokens = _count_tokens(request.prompt + " " + system)
    answer_tokens = _count_tokens(reply.text or "") if parts else 0
    return {
        "candidates": [
            {"content": {"parts": parts, "role": "model"}, "finishReason": reply.finish_reason, "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        },
        "modelVersion": request.model,
        "responseId": f"fake-{number}",
    }
