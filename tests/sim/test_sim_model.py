"""Golden model: equal to runtime/scheduler.py decision for decision, plus the SPEC's timing."""

from __future__ import annotations

import random

import pytest
from clove_gym.sim.backends import ModelBackend, SoftwareBackend, Tick, first_divergence, run_backend
from clove_gym.sim.model import Core, CycleIn
from clove_gym.sim.params import HwParams
from hypothesis import given, settings
from hypothesis import strategies as st


def random_case(seed: int) -> tuple[HwParams, list[Tick]]:
    r = random.Random(seed)
    n = r.choice([2, 4, 8])
    q = r.randint(1, 3)
    weights = tuple(r.randint(1, 3) for _ in range(n)) if r.random() < 0.5 else ()
    mc = r.randint(1, q)
    p = HwParams(
        agents=n,
        depth=r.choice([1, 2, 4, 8]),
        quantum=q,
        weights=weights,
        max_cost=mc,
        bucket_rate=r.choice([0, 16, 64, 256, 300]),
        bucket_burst=r.randint(mc, 6),
    )
    load = r.choice([0.3, 0.7, 1.0])
    ticks = [
        Tick((r.randrange(n), r.randint(1, mc)) if r.random() < load else None, r.random() < 0.8)
        for _ in range(800)
    ]
    return p, ticks


@pytest.mark.parametrize("seed", range(40))
def test_model_equals_software_scheduler(seed: int) -> None:
    p, ticks = random_case(seed)
    a = run_backend(ModelBackend(p), ticks)
    b = run_backend(SoftwareBackend(p), ticks)
    assert first_divergence(a, b) is None
    assert any(r.grant is not None for r in a)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**9))
def test_model_equals_software_hypothesis(seed: int) -> None:
    p, ticks = random_case(seed)
    assert (
        first_divergence(run_backend(ModelBackend(p), ticks), run_backend(SoftwareBackend(p), ticks)) is None
    )


def test_enqueue_to_dispatch_is_one_cycle_and_one_decision_per_cycle() -> None:
    core = Core(HwParams(agents=4, depth=4))
    assert not core.step(CycleIn(enq=(2, 1))).disp_valid  # stored at the edge
    out = core.step(CycleIn(enq=(3, 1)))
    assert out.disp_valid and out.disp_agent == 2
    out = core.step(CycleIn())
    assert out.disp_valid and out.disp_agent == 3
    assert core.stats.latencies == [1, 1]


def test_full_queue_refuses_and_quota_throttles() -> None:
    core = Core(HwParams(agents=2, depth=2, bucket_rate=64, bucket_burst=1))
    oks = [core.step(CycleIn(enq=(0, 1), disp_ready=False)).enq_ready for _ in range(3)]
    assert oks == [True, True, False]
    grants = [core.step(CycleIn()).disp_valid for _ in range(6)]
    assert grants == [True, False, False, False, True, False]  # 1 token, then 1/4 token per cycle


def test_weights_share_dispatches() -> None:
    core = Core(HwParams(agents=2, depth=64, weights=(3, 1)))
    for _ in range(40):
        core.step(CycleIn(enq=(0, 1), disp_ready=False))
        core.step(CycleIn(enq=(1, 1), disp_ready=False))
    got = [core.step(CycleIn()).disp_agent for _ in range(40)]
    assert got.count(0) == 30 and got.count(1) == 10


def test_mailbox_send_recv_broadcast_and_backpressure() -> None:
    p = HwParams(agents=4, slots=4, mbox_depth=2)
    core = Core(p)
    assert core.step(CycleIn(send=(0, 1, 0xBEEF, False))).send_ready
    assert not core.step(CycleIn(recv=1)).recv_ready  # still landing: not in agent 1's queue yet
    out = core.step(CycleIn(recv=1))
    assert out.recv_ready and not out.rdata_valid  # send-to-recv 2 cycles
    out = core.step(CycleIn())
    assert (out.rdata_valid, out.rdata_src, out.rdata_payload) == (True, 0, 0xBEEF)  # send-to-data 3 cycles
    assert core.step(CycleIn(send=(2, 0, 7, True))).send_ready  # one slot, three receivers
    assert core.step(CycleIn(send=(3, 0, 8, True))).send_ready  # agent 0: one queued + one landing
    assert not core.step(CycleIn(send=(1, 0, 9, True))).send_ready  # agent 0's mailbox is full
    for agent in (0, 1, 3):
        assert core.step(CycleIn(recv=agent)).recv_ready
    assert core.mbox.free.count(True) == 2  # the last reference is released one edge later
    core.step(CycleIn())
    assert core.mbox.free.count(True) == 3  # first broadcast fully received: its slot is free again
    core.reset()
    assert core.mbox.free.count(True) == 4 and not any(core.mbox.queues)


def test_mailbox_counts_the_landing_send() -> None:
    """Room and free slots are judged with the send of the previous cycle already counted."""
    core = Core(HwParams(agents=4, slots=2, mbox_depth=1))
    assert core.step(CycleIn(send=(0, 1, 1, False))).send_ready
    assert not core.step(CycleIn(send=(2, 1, 2, False))).send_ready  # agent 1's only place is taken
    assert core.step(CycleIn(send=(2, 3, 3, False))).send_ready  # another receiver, the last slot
    assert not core.step(CycleIn(send=(0, 2, 4, False))).send_ready  # both slots taken
    out = core.step(CycleIn(send=(0, 2, 4, False), recv=1))
    assert out.recv_ready and not out.send_ready  # the popped slot is free two edges later
    assert core.mbox.landing is None and len(core.mbox.queues[3]) == 1
    core.reset()
    assert core.step(CycleIn(send=(0, 1, 5, False))).send_ready
    core.reset()  # a reset drops the landing send: nothing arrives
    core.step(CycleIn())
    assert not core.step(CycleIn(recv=1)).recv_ready and core.mbox.free.count(True) == 2


def test_bad_cost_is_refused_with_the_cycle() -> None:
    core = Core(HwParams(agents=2))
    with pytest.raises(ValueError, match="cycle 0: cost 2"):
        core.step(CycleIn(enq=(0, 2)))
