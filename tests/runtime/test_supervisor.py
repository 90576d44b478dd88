"""Restart policy rules, one test per rule, all with explicit time (no clock, no sleeping)."""

from __future__ import annotations

import json

import pytest
from clove_gym.runtime.supervisor import (
    Escalate,
    Forget,
    Restart,
    RestartConfig,
    RestartPolicy,
    Supervisor,
)


def sup_with(policy: str, seed: int = 7, **kw: float) -> Supervisor:
    sup = Supervisor(seed=seed)
    sup.started(1, RestartConfig(policy=RestartPolicy.parse(policy), **kw), now=0.0)
    return sup


@pytest.mark.parametrize("spelling", ["on-failure", "on_failure", "ON_FAILURE"])
def test_policy_spellings(spelling: str) -> None:
    assert RestartPolicy.parse(spelling) is RestartPolicy.ON_FAILURE


def test_unknown_policy_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match="restart_policy"):
        RestartPolicy.parse("sometimes")


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_restarts", -1), ("jitter", 2.0), ("restart_window", "300"), ("backoff_multiplier", 0.5)],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RestartConfig(**{field: value})


def test_from_spawn_request() -> None:
    cfg = RestartConfig.from_spawn({"restart_policy": "always", "max_restarts": 2, "restart_window": 10})
    assert (cfg.policy, cfg.max_restarts, cfg.restart_window) == (RestartPolicy.ALWAYS, 2, 10)


def test_never_forgets_every_exit() -> None:
    for status in (0, 1, 139):
        sup = sup_with("never")
        decision = sup.exited(1, status, now=1.0)
        assert isinstance(decision, Forget) and decision.reason == "restart policy never"


@pytest.mark.parametrize(
    ("status", "restarts"), [(0, False), (1, True), (3, True), (128 + 11, True), (128 + 9, True)]
)
def test_on_failure_restarts_only_non_zero_or_signal(status: int, restarts: bool) -> None:
    decision = sup_with("on-failure").exited(1, status, now=1.0)
    assert isinstance(decision, Restart) is restarts
    if not restarts:
        assert isinstance(decision, Forget) and "clean exit" in decision.reason


def test_always_restarts_clean_exit() -> None:
    assert isinstance(sup_with("always").exited(1, 0, now=1.0), Restart)


def test_kill_by_request_is_never_restarted() -> None:
    decision = sup_with("always").exited(1, 137, now=1.0, killed=True)
    assert isinstance(decision, Forget) and decision.reason == "killed by request"


def test_exponential_backoff_without_jitter_and_cap() -> None:
    sup = sup_with(
        "always", jitter=0.0, backoff_initial=1.0, backoff_multiplier=2.0, backoff_max=5.0, max_restarts=100
    )
    delays = []
    now = 0.0
    for _ in range(6):
        d = sup.exited(1, 1, now=now)
        assert isinstance(d, Restart)
        delays.append(d.delay)
        now = d.at
        sup.started(1, sup._records[1].config, now=now)  # crashes at once again
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_jitter_is_seeded_bounded_and_capped() -> None:
    def run(seed: int) -> list[float]:
        sup = sup_with("always", seed=seed, jitter=0.5, backoff_max=6.0, max_restarts=100)
        out, now = [], 0.0
        for _ in range(8):
            d = sup.exited(1, 1, now=now)
            assert isinstance(d, Restart)
            out.append(d.delay)
            now = d.at
            sup.started(1, sup._records[1].config, now=now)
        return out

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    bases = [1, 2, 4, 6, 6, 6, 6, 6]
    assert all(0.5 * base <= d <= min(6.0, 1.5 * base) for d, base in zip(a, bases, strict=True))
    assert max(a) <= 6.0


def test_failure_count_resets_after_healthy_period() -> None:
    sup = sup_with("always", jitter=0.0, healthy_after=30.0, max_restarts=100)
    d1 = sup.exited(1, 1, now=0.5)
    sup.started(1, sup._records[1].config, now=d1.at)
    d2 = sup.exited(1, 1, now=d1.at + 0.1)  # crashed again quickly: backoff grows
    assert (d1.delay, d2.delay) == (1.0, 2.0)
    sup.started(1, sup._records[1].config, now=d2.at)
    d3 = sup.exited(1, 1, now=d2.at + 31.0)  # ran healthy for 31 s: back to the first delay
    assert isinstance(d3, Restart) and d3.delay == 1.0


def test_escalates_after_max_restarts_within_window_and_stops() -> None:
    sup = sup_with("on-failure", jitter=0.0, max_restarts=3, restart_window=60.0)
    now, attempts = 0.0, []
    for _ in range(3):
        d = sup.exited(1, 1, now=now)
        assert isinstance(d, Restart)
        attempts.append(d.attempt)
        now = d.at
        sup.started(1, sup._records[1].config, now=now)
    assert attempts == [1, 2, 3]
    esc = sup.exited(1, 1, now=now + 0.1)
    assert isinstance(esc, Escalate) and esc.restarts_in_window == 3 and esc.exit_status == 1
    again = sup.exited(1, 1, now=now + 1.0)  # no more restarts after escalation
    assert isinstance(again, Forget)


def test_max_restarts_zero_escalates_on_first_failure() -> None:
    assert isinstance(sup_with("always", max_restarts=0).exited(1, 1, now=1.0), Escalate)


def test_window_slides_so_spread_out_crashes_never_escalate() -> None:
    sup = sup_with("always", jitter=0.0, max_restarts=2, restart_window=10.0, healthy_after=1e6)
    now = 0.0
    for _ in range(10):
        d = sup.exited(1, 1, now=now)
        assert isinstance(d, Restart), d
        sup.started(1, sup._records[1].config, now=d.at)
        now = d.at + 20.0  # outside the window each time


def test_due_and_next_deadline_follow_the_schedule() -> None:
    sup = Supervisor(seed=1)
    cfg = RestartConfig(policy=RestartPolicy.ALWAYS, jitter=0.0)
    sup.started(1, cfg, now=0.0)
    sup.started(2, cfg, now=0.0)
    sup.exited(1, 1, now=10.0)  # restart at 11
    sup.exited(2, 1, now=10.5)  # restart at 11.5
    assert sup.next_deadline() == 11.0
    assert sup.due(10.9) == []
    assert sup.due(11.2) == [1]
    assert sup.due(11.2) == []  # returned once
    assert sup.next_deadline() == 11.5
    assert sup.due(100.0) == [2]
    assert sup.next_deadline() is None


def test_cancel_during_backoff_drops_the_pending_restart() -> None:
    sup = sup_with("always")
    sup.exited(1, 1, now=0.0)
    assert sup.cancel(1)
    assert sup.due(1e9) == [] and sup.next_deadline() is None


def test_agent_keeps_its_id_across_restarts_and_shutdown_order_is_reverse_start() -> None:
    sup = Supervisor()
    cfg = RestartConfig(policy=RestartPolicy.ALWAYS)
    for agent_id in (5, 6, 7):
        sup.started(agent_id, cfg, now=0.0)
    d = sup.exited(6, 1, now=1.0)
    assert isinstance(d, Restart) and d.agent_id == 6
    sup.started(6, cfg, now=d.at)  # same id again: not re-registered, order kept
    assert sup.shutdown_order() == [7, 6, 5]


def test_snapshot_restore_continues_identically() -> None:
    def scenario(sup: Supervisor, start: int) -> list[object]:
        out, now = [], 100.0 * start
        for _ in range(3):
            d = sup.exited(1, 1, now=now)
            out.append(d)
            if isinstance(d, Restart):
                now = d.at
                sup.started(1, sup._records[1].config, now=now)
        return out

    a = sup_with("always", seed=3, max_restarts=4)
    first = scenario(a, 0)
    snap = json.loads(json.dumps(a.snapshot()))
    b = Supervisor.restore(snap)
    assert scenario(a, 0) == scenario(b, 0)
    assert all(isinstance(d, Restart) for d in first)


def test_unsupervised_exit_is_forgotten() -> None:
    assert isinstance(Supervisor().exited(42, 1, now=0.0), Forget)
