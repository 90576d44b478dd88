"""The fake Gemini endpoint speaks Gemini's REST shape (checked here over plain HTTP, no SDK)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from clove_gym.runtime.llm import FakeGemini, Reply


def post(fake: FakeGemini, body: object, path: str = "/v1beta/models/m1:generateContent", key: str = "k"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(fake.base_url + path, data=data, headers={"x-goog-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def prompt(text: str, **generation: object) -> dict:
    body: dict = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if generation:
        body["generationConfig"] = generation
    return body


def test_default_script_echoes_deterministically_in_the_response_shape() -> None:
    with FakeGemini() as fake:
        answers = [post(fake, prompt("two words")) for _ in range(2)]
    status, raw = answers[0]
    assert status == 200
    body = json.loads(raw)
    assert body["candidates"][0]["content"] == {"parts": [{"text": "echo: two words"}], "role": "model"}
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"] == {
        "promptTokenCount": 2,
        "candidatesTokenCount": 3,
        "totalTokenCount": 5,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2}],
    }
    assert body["modelVersion"] == "m1"
    assert json.loads(answers[1][1])["candidates"] == body["candidates"]


def test_echo_honours_max_output_tokens() -> None:
    with FakeGemini() as fake:
        body = json.loads(post(fake, prompt("a b c d e", maxOutputTokens=3))[1])
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "echo: a b"
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_list_script_answers_in_order_then_reports_exhaustion() -> None:
    with FakeGemini(["first", Reply.error(429, "slow down")]) as fake:
        one, two, three = (post(fake, prompt(str(n))) for n in range(3))
    assert json.loads(one[1])["candidates"][0]["content"]["parts"][0]["text"] == "first"
    assert two[0] == 429
    assert json.loads(two[1]) == {
        "error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}
    }
    assert three[0] == 500 and b"script exhausted after 2 replies" in three[1]


def test_callable_script_sees_the_recorded_request() -> None:
    with FakeGemini(lambda r: f"{r.model}|{r.prompt}|{r.api_key}") as fake:
        status, raw = post(fake, prompt("hi"), path="/v1/models/m2:generateContent", key="secret")
        recorded = fake.requests[0]
    assert json.loads(raw)["candidates"][0]["content"]["parts"][0]["text"] == "m2|hi|secret"
    assert recorded.path == "/v1/models/m2:generateContent" and recorded.body == prompt("hi")


def test_wrong_key_bad_path_and_unparsable_request_are_refused_like_gemini() -> None:
    with FakeGemini(api_key="right") as fake:
        wrong = post(fake, prompt("x"), key="wrong")
        path = post(fake, prompt("x"), path="/v1beta/models/m:countTokens", key="right")
        garbage = post(fake, b"{nope", key="right")
    assert wrong[0] == 400 and b"API key not valid" in wrong[1]
    assert path[0] == 404 and b"countTokens" in path[1]
    assert garbage[0] == 400 and b"Invalid JSON payload" in garbage[1]


def test_malformed_reply_is_sent_verbatim() -> None:
    with FakeGemini([Reply.malformed(b"not json")]) as fake:
        assert post(fake, prompt("x")) == (200, b"not json")


@pytest.mark.parametrize("status", [401, 403, 500, 503])
def test_error_replies_use_googles_error_body(status: int) -> None:
    with FakeGemini([Reply.error(status)]) as fake:
        code, raw = post(fake, prompt("x"))
    assert code == status and json.loads(raw)["error"]["code"] == status


def test_close_cuts_a_delayed_answer_short() -> None:
    fake = FakeGemini([Reply(text="late", delay_s=30)])
    result: list = []
    client = threading.Thread(target=lambda: result.append(post(fake, prompt("x"))))
    client.start()
    while not fake.requests:
        time.sleep(0.01)
    started = time.monotonic()
    fake.close()
    client.join(10)
    assert time.monotonic() - started < 10
    assert not client.is_alive()
    assert result[0][0] == 503 and b"shutting down" in result[0][1]
