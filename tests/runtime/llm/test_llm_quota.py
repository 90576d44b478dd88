"""Quota: the permission record's `llm` object, with the spec's check rule (§2.3)."""

from __future__ import annotations

import pytest
from clove_gym.runtime.llm import Quota


def test_unlimited_by_default() -> None:
    quota = Quota()
    quota.record(10**9, calls=10**6)
    assert quota.allows(estimate=10**9)


def test_calls_limit_denies_once_used_up() -> None:
    quota = Quota(max_calls=2)
    assert quota.allows()
    quota.record(5)
    quota.record(5)
    assert not quota.allows()


def test_token_limit_counts_the_estimate() -> None:
    quota = Quota(max_tokens=100, tokens_used=90)
    assert quota.allows(estimate=10)
    assert not quota.allows(estimate=11)
    quota.record(20)  # recorded past the limit, as LLM_REPORT does
    assert quota.tokens_used == 110 and not quota.allows()


def test_round_trips_the_permission_json() -> None:
    data = {"max_tokens": 5, "max_calls": 3, "tokens_used": 1, "calls_made": 2}
    assert Quota.from_dict(data).to_dict() == data
    assert Quota.from_dict({}).to_dict() == {
        "max_tokens": 0,
        "max_calls": 0,
        "tokens_used": 0,
        "calls_made": 0,
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_tokens": -1}, "Quota.max_tokens must be a non-negative int, got -1"),
        ({"max_calls": "3"}, "Quota.max_calls must be a non-negative int, got '3'"),
        ({"calls_made": True}, "Quota.calls_made must be a non-negative int, got True"),
        ({"max_tokenz": 1}, "unknown field(s) ['max_tokenz']"),
        ([1, 2], "must be a JSON object, got list"),
    ],
)
def test_bad_records_are_refused_naming_the_field(data: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Quota.from_dict(data)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_negative_usage_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Quota().record(-1)
