"""The real Gemini API, only when GEMINI_API_KEY is set (never in offline CI)."""

from __future__ import annotations

import os
import threading

import pytest
from clove_gym.runtime.llm import LLMService

pytestmark = pytest.mark.skipif(
    not os.environ.get("GEMINI_API_KEY"), reason="GEMINI_API_KEY is not set: live Gemini test skipped"
)


def test_live_think_answers_with_tokens() -> None:
    answered = threading.Event()
    results: list[dict] = []
    with LLMService(timeout_s=60) as service:
        assert service.configured
        service.submit(
            1,
            {"prompt": "Reply with the single word: pong", "max_tokens": 16},
            lambda r: (results.append(r), answered.set()),
        )
        assert answered.wait(90), "no answer from Gemini within 90 s"
    result = results[0]
    assert result["success"], result.get("error")
    assert "pong" in result["content"].lower() and result["tokens"] > 0
