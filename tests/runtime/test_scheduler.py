"""Behaviour of the weighted-DRR + token-bucket scheduler (runtime/scheduler.py)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from clove_gym.runtime.scheduler import Scheduler
from hypothesis import given, settings
from hypothesis import strategies as st

S = 1_000_000_000  # ns per second


def saturate(sched: Scheduler, ids: list[int], costs: dict[int, int], rounds: int) -> Counter[int]:
    """Keep every queue full and return the cost served per agent over `rounds` dispatches."""
    served: Counter[int] = Counter()
    for _ in range(rounds):
        for agent in ids:
            while sched.enqueue(agent, None, cost=costs.get(agent, 1)):
                pass
        got = sched.dispatch()
        assert got is not None
        served[got[0]] += costs.get(got[0], 1)
    return served


def test_equal_weights_share_equally_under_saturation() -> None:
    sched = Scheduler(depth=8)
    ids = list(range(5))
    for agent in ids:
        sched.add_agent(agent)
    served = saturate(sched, ids, {}, 5000)
    assert max(served.values()) / min(served.values()) <= 1.1


def test_equal_weights_share_cost_not_count_when_costs_differ() -> None:
    sched = Scheduler(quantum=4, depth=8)
    for agent in (1, 2, 3):
        sched.add_agent(agent)
    served = saturate(sched, [1, 2, 3], {1: 1, 2: 3, 3: 7}, 6000)
    assert max(served.values()) / min(served.values()) <= 1.1


def test_weights_give_proportional_service() -> None:
    sched = Scheduler(depth=8)
    weights = {10: 1, 11: 2, 12: 5}
    for agent, weight in weights.items():
        sched.add_agent(agent, weight=weight)
    served = saturate(sched, list(weights), {}, 8000)
    for agent, weight in weights.items():
        share = served[agent] / weight
        base = served[10] / weights[10]
        assert 0.95 <= share / base <= 1.05, (agent, served)


def test_round_robin_order_is_the_add_order() -> None:
    sched = Scheduler()
    for agent in (7, 3, 5):
        sched.add_agent(agent)
    for agent in (5, 3, 7):
        for n in range(2):
            sched.enqueue(agent, f"{agent}.{n}")
    order = [sched.dispatch() for _ in range(6)]
    assert order == [(7, "7.0"), (3, "3.0"), (5, "5.0"), (7, "7.1"), (3, "3.1"), (5, "5.1")]
    assert sched.dispatch() is None and len(sched) == 0


def test_deficit_resets_when_a_queue_empties() -> None:
    # With quantum 3 an agent that empties its queue must not bank the unused deficit.
    sched = Scheduler(quantum=3)
    sched.add_agent(1)
    sched.add_agent(2)
    sched.enqueue(1, "a")  # uses 1 of 3, queue empties -> deficit 0
    assert sched.dispatch() == (1, "a")
    for n in range(6):
        sched.enqueue(1, f"1.{n}")
        sched.enqueue(2, f"2.{n}")
    got = [sched.dispatch()[0] for _ in range(12)]
    assert got == [2, 2, 2, 1, 1, 1, 2, 2, 2, 1, 1, 1]


def test_no_starvation_of_a_lone_request_among_floods() -> None:
    sched = Scheduler(depth=64)
    flooders = list(range(8))
    for agent in [*flooders, 99]:
        sched.add_agent(agent)
    for agent in flooders:
        while sched.enqueue(agent, "flood"):
            pass
    for _ in range(37):
        sched.dispatch()
    sched.enqueue(99, "lone")
    waited = 1
    while sched.dispatch() != (99, "lone"):
        waited += 1
        assert waited <= len(flooders) + 1, "the lone request waited more than one round"


def test_backpressure_refuses_when_full_and_accepts_after_dispatch() -> None:
    sched = Scheduler(depth=3)
    sched.add_agent(1)
    assert [sched.enqueue(1, n) for n in range(5)] == [True, True, True, False, False]
    assert sched.pending(1) == 3 and sched.stats(1).refused == 2
    assert sched.dispatch() == (1, 0)
    assert sched.enqueue(1, 3)
    assert [sched.dispatch()[1] for _ in range(3)] == [1, 2, 3]


def test_token_bucket_limits_rate_and_burst() -> None:
    sched = Scheduler(depth=1000)
    sched.add_agent(1, rate_per_s=10.0, burst=5)
    for n in range(1000):
        sched.enqueue(1, n)
    t = 0
    burst = []
    while (got := sched.dispatch(t)) is not None:
        burst.append(got)
    assert len(burst) == 5  # bucket starts full
    served = 0
    for t in range(0, 10 * S + 1, S // 100):  # 10 s in 10 ms steps
        while sched.dispatch(t) is not None:
            served += 1
    assert served == 100  # exactly 10/s after the burst, integer arithmetic


def test_throttled_agent_does_not_block_others_and_keeps_its_place() -> None:
    sched = Scheduler()
    sched.add_agent(1, rate_per_s=1.0, burst=1)
    sched.add_agent(2)
    for n in range(3):
        sched.enqueue(1, n)
        sched.enqueue(2, n)
    assert [sched.dispatch(0) for _ in range(4)] == [(1, 0), (2, 0), (2, 1), (2, 2)]
    assert sched.dispatch(S // 2) is None  # only agent 1 queued, and it is out of tokens
    assert sched.dispatch(S) == (1, 1)
    assert sched.dispatch(S) is None


def test_time_going_backwards_refills_nothing() -> None:
    sched = Scheduler()
    sched.add_agent(1, rate_per_s=1.0, burst=1)
    for n in range(3):
        sched.enqueue(1, n)
    assert sched.dispatch(5 * S) == (1, 0)
    assert sched.dispatch(0) is None
    assert sched.dispatch(6 * S) == (1, 1)


def test_remove_agent_returns_items_and_keeps_the_ring_consistent() -> None:
    sched = Scheduler()
    for agent in (1, 2, 3):
        sched.add_agent(agent)
        sched.enqueue(agent, f"{agent}a")
        sched.enqueue(agent, f"{agent}b")
    assert sched.dispatch() == (1, "1a")
    assert sched.remove_agent(2) == ["2a", "2b"]
    assert sched.agents == [1, 3] and len(sched) == 3
    assert [sched.dispatch() for _ in range(3)] == [(3, "3a"), (1, "1b"), (3, "3b")]
    sched.add_agent(2)  # re-added at the end of the ring
    assert sched.agents == [1, 3, 2]


def test_wait_statistics_use_the_given_times() -> None:
    sched = Scheduler()
    sched.add_agent(1)
    sched.enqueue(1, "x", now_ns=100)
    sched.enqueue(1, "y", now_ns=150)
    sched.dispatch(400)
    sched.dispatch(450)
    stats = sched.stats(1)
    assert (stats.dispatched, stats.served_cost, stats.wait_ns) == (2, 2, 600)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.enqueue(42, "x"), "unknown agent 42"),
        (lambda s: s.enqueue(1, "x", cost=0), "cost must be an int >= 1"),
        (lambda s: s.add_agent(1), "already added"),
        (lambda s: s.add_agent(5, weight=0), "weight must be an int >= 1"),
        (lambda s: s.add_agent(5, rate_per_s=-1), "rate_per_s must be >= 0"),
        (lambda s: s.add_agent(5, rate_per_s=0.0001), "below 0.001"),
        (lambda s: s.pending(9), "unknown agent 9"),
    ],
)
def test_bad_input_names_what_was_wrong(call, message) -> None:
    sched = Scheduler()
    sched.add_agent(1)
    with pytest.raises((ValueError, KeyError), match=message):
        call(sched)


def test_cost_above_burst_is_refused() -> None:
    sched = Scheduler()
    sched.add_agent(1, rate_per_s=1.0, burst=2)
    with pytest.raises(ValueError, match="exceeds its burst 2"):
        sched.enqueue(1, "big", cost=3)


def run_script(seed: int) -> list:
    """A random mix of all operations; returns every observable result."""
    rng = random.Random(seed)
    sched = Scheduler(quantum=rng.randint(1, 3), depth=rng.randint(1, 6))
    out: list = []
    next_id = 0
    now = 0
    for _ in range(400):
        now += rng.randint(0, S // 20)
        op = rng.random()
        if op < 0.1 or not sched.agents:
            rate = rng.choice([0.0, 0.0, 2.5, 10.0])
            sched.add_agent(next_id, weight=rng.randint(1, 4), rate_per_s=rate, burst=rng.randint(3, 4))
            next_id += 1
        elif op < 0.13:
            out.append(sched.remove_agent(rng.choice(sched.agents)))
        elif op < 0.6:
            agent = rng.choice(sched.agents)
            out.append(sched.enqueue(agent, (agent, now), cost=rng.randint(1, 3), now_ns=now))
        else:
            out.append(sched.dispatch(now))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32))
def test_same_inputs_give_the_same_decisions(seed: int) -> None:
    assert run_script(seed) == run_script(seed)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32))
def test_invariants_hold_for_random_operation_mixes(seed: int) -> None:
    rng = random.Random(seed)
    sched = Scheduler(quantum=rng.randint(1, 3), depth=4)
    queued: dict[int, list] = {}
    rates = []
    for agent in range(rng.randint(1, 5)):
        rates.append(rng.choice([0.0, 5.0]))
        sched.add_agent(agent, weight=rng.randint(1, 3), rate_per_s=rates[-1], burst=3)
        queued[agent] = []
    now = 0
    for step in range(300):
        now += rng.randint(0, S // 10)
        if rng.random() < 0.5:
            agent = rng.randrange(len(queued))
            if sched.enqueue(agent, step, cost=rng.randint(1, 3), now_ns=now):
                queued[agent].append(step)
        else:
            got = sched.dispatch(now)
            if got is not None:
                agent, item = got
                assert queued[agent].pop(0) == item  # FIFO per agent
        assert len(sched) == sum(map(len, queued.values())) <= 4 * len(queued)
    # Unthrottled agents with work are always served (nothing is stranded).
    if not any(rates) and len(sched):
        assert sched.dispatch(now) is not None


def test_next_eligible_ns_is_exactly_when_dispatch_succeeds_again() -> None:
    sched = Scheduler()
    sched.add_agent(1, rate_per_s=3.0, burst=1)
    sched.add_agent(2, rate_per_s=0.7, burst=2)
    assert sched.next_eligible_ns(0) is None
    for n in range(4):
        sched.enqueue(1, n)
        sched.enqueue(2, n, cost=2)
    now = 10
    assert sched.next_eligible_ns(now) == now  # buckets start full
    served = 0
    while served < 8:
        while sched.dispatch(now) is not None:
            served += 1
        if served == 8:
            break
        at = sched.next_eligible_ns(now)
        assert at > now and sched.dispatch(at - 1) is None
        now = at
    assert sched.next_eligible_ns(now) is None


def test_next_eligible_ns_is_now_for_unlimited_work() -> None:
    sched = Scheduler()
    sched.add_agent(1)
    sched.enqueue(1, "x")
    assert sched.next_eligible_ns(123) == 123
