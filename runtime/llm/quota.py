"""Per-agent LLM quotas: the `llm` object of a permission record (spec/protocol.md §2.3, §2.12)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_FIELDS = ("max_tokens", "max_calls", "tokens_used", "calls_made")


@dataclass(slots=True)
class Quota:
    """Token and call limits (0 = unlimited) with usage counters; check before a call, record after.

    Not locked: the owner (LLMService, the kernel's permission store) serialises access.
    """

    max_tokens: int = 0
    max_calls: int = 0
    tokens_used: int = 0
    calls_made: int = 0

    def __post_init__(self) -> None:
        for name in _FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Quota.{name} must be a non-negative int, got {value!r}")

    def allows(self, estimate: int = 0) -> bool:
        """Spec §2.3: deny when the calls are used up or used + estimate tokens would pass the limit."""
        if self.max_calls and self.calls_made >= self.max_calls:
            return False
        return not (self.max_tokens and self.tokens_used + estimate > self.max_tokens)

    def record(self, tokens: int, calls: int = 1) -> None:
        """Add usage (recorded even past the limit, as LLM_REPORT does)."""
        if tokens < 0 or calls < 0:
            raise ValueError(f"Quota.record: tokens and calls must be >= 0, got {tokens}, {calls}")
        self.tokens_used += tokens
        self.calls_made += calls

    def to_dict(self) -> dict[str, int]:
        """The permission record's `llm` JSON object."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Quota:
        """Parse an `llm` object; unknown keys and wrong types are refused with their name."""
        if not isinstance(data, dict):
            raise ValueError(f"llm quota must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"llm quota: unknown field(s) {sorted(unknown)}; expected {list(_FIELDS)}")
        return cls(**data)
