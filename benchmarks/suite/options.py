"""How a suite run is configured; kept free of heavy imports so the command line can validate quickly."""

from __future__ import annotations

import os
from dataclasses import dataclass

LLM_MODES = ("auto", "fake", "gemini")


@dataclass
class RunOptions:
    repeat: int = 1
    timeout_s: float | None = None  # overrides every task's own timeout
    llm: str = "auto"
    scheduler: str | None = None  # THINK queue backend spec (software, rtl, ...); None: $CLOVE_SCHEDULER


def resolve_llm(mode: str) -> str:
    """The THINK backend, "fake" or "gemini": auto picks Gemini only with an API key (no key, no network)."""
    has_key = bool(os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"))
    if mode not in LLM_MODES:
        raise ValueError(f"unknown LLM mode {mode!r} (one of {', '.join(LLM_MODES)})")
    if mode == "gemini" and not has_key:
        raise ValueError("--llm gemini needs GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment")
    return "gemini" if mode == "gemini" or (mode == "auto" and has_key) else "fake"
