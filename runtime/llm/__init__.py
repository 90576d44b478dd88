"""THINK for agents: google-genai behind the fair Scheduler and per-agent quotas, plus a fake Gemini."""

from clove_gym.runtime.llm.fake_gemini import FakeGemini, RecordedRequest, Reply
from clove_gym.runtime.llm.quota import Quota
from clove_gym.runtime.llm.service import LLMService

__all__ = ["FakeGemini", "LLMService", "Quota", "RecordedRequest", "Reply"]
