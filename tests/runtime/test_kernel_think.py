"""THINK through the kernel: the real google-genai client against a local fake Gemini endpoint."""

from __future__ import annotations

import json
import time

import pytest
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.llm import FakeGemini, LLMService, Reply
from clove_gym.runtime.protocol import Op


@pytest.fixture
def think_kernel(tmp_path):
    fake = FakeGemini(["The answer is 4.", Reply.error(429, "slow down"), "third"])
    llm = LLMService(base_url=fake.base_url, timeout_s=10)
    kernel = Kernel(str(tmp_path / "k.sock"), llm=llm).start()
    try:
        yield kernel, fake
    finally:
        kernel.stop()
        llm.close()
        fake.close()


def test_think_sync_async_failure_and_quota(think_kernel, raw_client):
    kernel, fake = think_kernel
    c = raw_client(kernel.socket_path)
    r = c.call(Op.THINK, {"prompt": "What is 2+2?", "async": False, "temperature": 0.2})
    assert r["success"] is True and r["content"] == "The answer is 4." and r["tokens"] > 0
    assert fake.requests[0].prompt == "What is 2+2?"
    r = c.call(Op.THINK, {"prompt": "again", "async": False})
    assert r["success"] is False and "429" in r["error"]  # the failure comes back with its reason
    accepted = c.call(Op.THINK, {"prompt": "async one"})  # async when the key is absent (§2.12)
    assert accepted["status"] == "accepted"
    deadline = time.monotonic() + 10
    results = []
    while not results and time.monotonic() < deadline:
        results = c.call(Op.ASYNC_POLL, {})["results"]
        time.sleep(0.02)
    assert results[0]["opcode_name"] == "THINK" and json.loads(results[0]["payload"])["content"] == "third"
    perms = c.call(Op.GET_PERMS, {})["permissions"]["llm"]
    assert perms["calls_made"] == 2 and perms["tokens_used"] > 0
    c.call(Op.SET_PERMS, {"permissions": {"can_think": True, "llm": {"max_calls": 1}}})
    c.call(Op.LLM_REPORT, {"tokens": 5})
    denied = c.call(Op.THINK, {"prompt": "over quota", "async": False})
    assert denied["success"] is False and "quota" in denied["error"]
    assert c.call(Op.THINK, {"async": False})["error"] == "prompt required"
    c.close()


def test_think_without_key_or_endpoint_says_so(tmp_path, raw_client, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("CLOVE_GEMINI_BASE_URL", raising=False)
    with Kernel(str(tmp_path / "k.sock")) as kernel:
        c = raw_client(kernel.socket_path)
        r = c.call(Op.THINK, {"prompt": "hi", "async": False})
        assert r["success"] is False and "GEMINI_API_KEY" in r["error"]
        c.close()
