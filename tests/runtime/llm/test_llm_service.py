"""LLMService end to end: the real google-genai client against the fake Gemini endpoint."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from clove_gym.runtime.llm import FakeGemini, LLMService, Quota, Reply
from clove_gym.runtime.llm.gemini import NOT_CONFIGURED, QUOTA_DENIED
from clove_gym.runtime.scheduler import Scheduler


class Answers:
    """Collects `done` results; `wait(n)` blocks until n have arrived."""

    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []
        self._cond = threading.Condition()

    def __call__(self, result: dict[str, Any]) -> None:
        with self._cond:
            self.results.append(result)
            self._cond.notify_all()

    def wait(self, n: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.results) >= n, timeout), (
                f"{len(self.results)}/{n} answers"
            )
            return list(self.results)


def think(service: LLMService, request: dict[str, Any], agent: int = 1) -> dict[str, Any]:
    answers = Answers()
    assert service.submit(agent, request, answers)
    return answers.wait()[0]


@pytest.fixture(autouse=True)
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)


def test_success_carries_text_and_token_count() -> None:
    with FakeGemini() as fake, LLMService(base_url=fake.base_url) as service:
        result = think(service, {"prompt": "count these four"})
    assert result == {"success": True, "content": "echo: count these four", "tokens": 3 + 4}


def either(obj: dict[str, Any], camel: str, snake: str) -> Any:
    """REST accepts both spellings of a field; SDK versions differ in which one they send."""
    return obj[camel] if camel in obj else obj[snake]


def test_request_fields_reach_gemini_as_the_sdk_encodes_them() -> None:
    image = base64.b64encode(b"\x89PNG fake").decode()
    request = {
        "prompt": "describe",
        "image": {"data": image, "mime_type": "image/png"},
        "system_instruction": "be brief",
        "temperature": 0.5,
        "max_tokens": 64,
        "thinking_level": "medium",
        "model": "gemini-2.5-flash",
        "tools": [
            {"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {}}}
        ],
    }
    with FakeGemini() as fake, LLMService(base_url=fake.base_url, api_key="k1") as service:
        assert think(service, request)["success"]
        sent = fake.requests[0]
    assert sent.model == "gemini-2.5-flash" and sent.api_key == "k1"
    body = sent.body
    text, inline = body["contents"][0]["parts"]
    assert text == {"text": "describe"} and inline["inlineData"]["data"] == image
    assert either(inline["inlineData"], "mimeType", "mime_type") == "image/png"
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    config = body["generationConfig"]
    assert (config["temperature"], config["maxOutputTokens"]) == (0.5, 64)
    assert either(config["thinkingConfig"], "thinkingBudget", "thinking_budget") == 4096
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "lookup"
    assert either(declaration, "parametersJsonSchema", "parameters_json_schema") == {
        "type": "object",
        "properties": {},
    }


def test_function_calls_are_returned() -> None:
    reply = Reply(text="", function_calls=({"name": "lookup", "args": {"q": "x"}},))
    with FakeGemini([reply]) as fake, LLMService(base_url=fake.base_url) as service:
        result = think(service, {"prompt": "p", "tools": [{"name": "lookup"}]})
    assert result["success"] and result["function_calls"] == [{"name": "lookup", "args": {"q": "x"}}]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply.error(429, "quota"), "rate limited (429 RESOURCE_EXHAUSTED: quota)"),
        (Reply.error(500, "boom"), "server error (500 INTERNAL: boom)"),
        (Reply.error(503, "overloaded"), "server error (503 UNAVAILABLE: overloaded)"),
        (Reply.error(401, "no creds"), "bad API key (401 UNAUTHENTICATED: no creds)"),
        (Reply.error(403, "forbidden"), "bad API key (403 PERMISSION_DENIED: forbidden)"),
        (Reply.error(404, "no such model"), "model error (404 NOT_FOUND: no such model)"),
        (Reply.malformed(), "malformed response from the model"),
        (
            Reply(text=None, finish_reason="SAFETY"),
            "model error: empty answer (finish_reason=FinishReason.SAFETY",
        ),
    ],
)
def test_every_fault_becomes_success_false_with_its_reason(reply: Reply, reason: str) -> None:
    with FakeGemini([reply]) as fake, LLMService(base_url=fake.base_url) as service:
        result = think(service, {"prompt": "x"})
    assert result["success"] is False and result["content"] == ""
    assert result["error"].startswith(reason), result["error"]
    assert len(fake.requests) == 1  # the SDK did not retry behind our back


def test_wrong_key_is_reported_as_bad_key() -> None:
    with FakeGemini(api_key="right") as fake, LLMService(base_url=fake.base_url, api_key="wrong") as service:
        result = think(service, {"prompt": "x"})
    assert result["success"] is False and result["error"].startswith("bad API key (400 INVALID_ARGUMENT")


def test_timeout_is_honoured() -> None:
    with (
        FakeGemini([Reply(text="late", delay_s=30)]) as fake,
        LLMService(base_url=fake.base_url, timeout_s=0.5) as service,
    ):
        started = time.monotonic()
        result = think(service, {"prompt": "x"})
        elapsed = time.monotonic() - started
    assert result == {
        "success": False,
        "error": "timeout: no answer from the model within 0.5 s",
        "content": "",
    }
    assert 0.5 <= elapsed < 10  # loaded machines are slow, never fast


def test_unreachable_endpoint_is_a_connection_failure() -> None:
    fake = FakeGemini()
    url = fake.base_url
    fake.close()
    with LLMService(base_url=url, timeout_s=5) as service:
        result = think(service, {"prompt": "x"})
    assert result["success"] is False and result["error"].startswith("connection failed: ConnectError")


def test_without_key_or_endpoint_think_is_not_configured() -> None:
    with LLMService() as service:
        assert not service.configured
        assert think(service, {"prompt": "x"}) == {"success": False, "error": NOT_CONFIGURED, "content": ""}


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "from-google-env")
    with FakeGemini() as fake, LLMService(base_url=fake.base_url) as service:
        assert service.configured
        assert think(service, {"prompt": "x"})["success"]
        assert fake.requests[0].api_key == "from-google-env"
    monkeypatch.setenv("GEMINI_API_KEY", "from-gemini-env")
    assert LLMService(base_url=fake.base_url).api_key == "from-gemini-env"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"prompt": 3}, "'prompt' must be a string"),
        ({}, "needs a non-empty 'prompt' or an 'image'"),
        (
            {"prompt": "x", "image": {"data": "***", "mime_type": "image/png"}},
            "'image.data' is not valid base64",
        ),
        ({"prompt": "x", "image": {"data": "", "mime_type": "png"}}, "'image.mime_type' must be a MIME type"),
        ({"prompt": "x", "temperature": "hot"}, "'temperature' must be a number in [0, 2]"),
        ({"prompt": "x", "max_tokens": 0}, "'max_tokens' must be an int >= 1"),
        ({"prompt": "x", "thinking_level": "extreme"}, "'thinking_level' must be one of"),
        (
            {"prompt": "x", "tools": [{"description": "no name"}]},
            "'tools[0]' must be an object with a string 'name'",
        ),
        (["not", "a", "dict"], "must be a JSON object, got list"),
    ],
)
def test_bad_requests_are_answered_at_once_naming_the_field(request_: Any, message: str) -> None:
    with FakeGemini() as fake, LLMService(base_url=fake.base_url) as service:
        result = think(service, request_)
        assert result["success"] is False and message in result["error"]
        assert fake.requests == []


def gate_script(gate: threading.Event):
    """Answers hold until `gate` is set (the fake answers one request at a time while held)."""

    def script(request):
        assert gate.wait(20), "test gate never opened"
        return f"answer to {request.prompt}"

    return script


def test_a_flooding_agent_does_not_delay_another_agents_request() -> None:
    arrivals: list[str] = []

    def script(request):
        arrivals.append(request.prompt)
        return Reply(text="ok", delay_s=0.01)

    with FakeGemini(script) as fake, LLMService(base_url=fake.base_url, workers=1) as service:
        flood = Answers()
        for n in range(15):
            assert service.submit(1, {"prompt": f"flood {n}"}, flood)
        while len(arrivals) < 3:
            time.sleep(0.005)
        seen_before = len(arrivals)
        lone = Answers()
        assert service.submit(2, {"prompt": "lone"}, lone)
        assert lone.wait()[0]["success"]
        position = arrivals.index("lone")
        flood.wait(15)
    # At most the request in flight plus one more of the flood's goes first.
    assert position <= seen_before + 2, (position, seen_before)


def test_full_queue_refuses_and_later_accepts() -> None:
    gate = threading.Event()
    with FakeGemini(gate_script(gate)) as fake:
        service = LLMService(base_url=fake.base_url, workers=1, scheduler=Scheduler(depth=2))
        answers = Answers()
        assert service.submit(1, {"prompt": "in flight"}, answers)
        while not fake.requests:
            time.sleep(0.005)
        assert service.submit(1, {"prompt": "q1"}, answers)
        assert service.submit(1, {"prompt": "q2"}, answers)
        assert not service.submit(1, {"prompt": "refused"}, answers)
        assert service.submit(2, {"prompt": "other agent has room"}, answers)
        gate.set()
        results = answers.wait(4)
        assert service.submit(1, {"prompt": "room again"}, answers)
        answers.wait(5)
        service.close()
    assert all(r["success"] for r in results)
    assert "refused" not in {r.prompt for r in fake.requests}


def test_call_quota_denies_after_max_calls_and_token_quota_after_max_tokens() -> None:
    with FakeGemini() as fake, LLMService(base_url=fake.base_url) as service:
        calls = Quota(max_calls=2)
        service.set_agent(1, quota=calls)
        assert think(service, {"prompt": "one"}, agent=1)["success"]
        assert think(service, {"prompt": "two"}, agent=1)["success"]
        assert think(service, {"prompt": "three"}, agent=1) == {
            "success": False,
            "error": QUOTA_DENIED,
            "content": "",
        }
        assert calls.to_dict() == {"max_tokens": 0, "max_calls": 2, "tokens_used": 3 + 3, "calls_made": 2}

        tokens = Quota(max_tokens=10)
        service.set_agent(2, quota=tokens)
        first = think(service, {"prompt": "a b c d e f"}, agent=2)  # 6 + 7 tokens: passes the limit
        assert first["success"] and tokens.tokens_used == 13
        assert think(service, {"prompt": "x"}, agent=2)["error"] == QUOTA_DENIED
        assert len(fake.requests) == 3


def test_token_rate_limit_spaces_an_agents_calls() -> None:
    with FakeGemini() as fake, LLMService(base_url=fake.base_url, workers=2) as service:
        service.set_agent(1, rate_per_s=20.0, burst=1)
        answers = Answers()
        started = time.monotonic()
        for n in range(5):
            assert service.submit(1, {"prompt": str(n)}, answers)
        assert all(r["success"] for r in answers.wait(5))
        assert time.monotonic() - started >= 4 / 20  # 1 at once, then one per 50 ms


def test_close_answers_pending_requests_and_later_submits() -> None:
    gate = threading.Event()
    with FakeGemini(gate_script(gate)) as fake:
        service = LLMService(base_url=fake.base_url, workers=1)
        running, queued = Answers(), Answers()
        service.submit(1, {"prompt": "running"}, running)
        while not fake.requests:
            time.sleep(0.005)
        for n in range(5):
            service.submit(1 + n % 2, {"prompt": f"queued {n}"}, queued)
        closer = threading.Thread(target=service.close)
        closer.start()
        errors = queued.wait(5)
        gate.set()
        closer.join(20)
        assert not closer.is_alive()
        late = think(service, {"prompt": "late"})
    assert {r["error"] for r in errors} == {"LLM service closed before the request ran"}
    assert running.wait()[0] == {"success": True, "content": "answer to running", "tokens": 1 + 3}
    assert late == {"success": False, "error": "LLM service closed", "content": ""}


def test_remove_agent_answers_its_queued_requests() -> None:
    gate = threading.Event()
    with FakeGemini(gate_script(gate)) as fake, LLMService(base_url=fake.base_url, workers=1) as service:
        answers = Answers()
        service.submit(1, {"prompt": "running"}, answers)
        while not fake.requests:
            time.sleep(0.005)
        service.submit(2, {"prompt": "doomed"}, answers)
        service.remove_agent(2)
        assert answers.wait()[0]["error"] == "agent 2 removed before its THINK ran"
        gate.set()
        assert answers.wait(2)[1]["success"]


def test_a_raising_callback_does_not_kill_the_worker() -> None:
    def explode(result: dict[str, Any]) -> None:
        raise RuntimeError("caller bug")

    with FakeGemini() as fake, LLMService(base_url=fake.base_url, workers=1) as service:
        assert service.submit(1, {"prompt": "x"}, explode)
        assert think(service, {"prompt": "still alive"})["success"]


def test_offline_or_live_falls_back_to_a_private_fake() -> None:
    service = LLMService.offline_or_live(workers=1)
    try:
        assert not service.configured and service.base_url
        assert think(service, {"prompt": "hello"}) == {
            "success": True,
            "content": "echo: hello",
            "tokens": 1 + 2,
        }
    finally:
        service.close()
