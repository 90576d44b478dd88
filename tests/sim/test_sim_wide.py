"""The K-wide golden model makes exactly the sequential rule's decisions, K per cycle (SPEC.md §8)."""

from __future__ import annotations

import copy
import random

import pytest
from clove_gym.runtime.scheduler import Scheduler as SoftwareScheduler
from clove_gym.sim.model import Core, CycleIn
from clove_gym.sim.params import HwParams, ParamsError
from clove_gym.sim.wide import WideIn, WideParams, WideScheduler
from clove_gym.sim.wide_stimulus import WIDE_PROFILES, wide_cycles
from hypothesis import given, settings
from hypothesis import strategies as st


def software_run(p: WideParams, cycles: list[WideIn]) -> tuple[list[tuple[int, ...]], list[tuple[bool, ...]]]:
    """runtime/scheduler.py driven by the wide convention: lanes = its next K dispatches (on a copy),
    ports judged on the queue lengths at the start of the cycle, `take` real dispatches, then enqueues."""
    s = SoftwareScheduler(quantum=1, depth=p.depth)
    for a in range(p.agents):
        s.add_agent(a)
    lanes, accepted = [], []
    for t, inp in enumerate(cycles):
        trial = copy.deepcopy(s)
        shown = []
        for _ in range(p.width):
            got = trial.dispatch(now_ns=t)
            if got is None:
                break
            shown.append(got[0])
        lanes.append(tuple(shown))
        room = {a: p.depth - s.pending(a) for a in range(p.agents)}
        ok = []
        for a in inp.enq:
            ok.append(a is not None and room[a] > 0)
            if ok[-1]:
                room[a] -= 1
        accepted.append(tuple(ok) + (False,) * (p.width - len(ok)))
        for _ in range(inp.take):
            got = s.dispatch(now_ns=t)
            if got is None:
                break
        for a, good in zip(inp.enq, ok, strict=True):
            if good:
                assert s.enqueue(a, t, now_ns=t)
    return lanes, accepted


def sequential_grants(p: WideParams, cycles: list[WideIn], accepted: list[tuple[bool, ...]]) -> list[int]:
    """The width-1 golden model fed the same work one decision per cycle: `take` ready cycles, then one
    cycle per accepted enqueue with the consumer stalled. Its grant sequence must be the wide one."""
    core, out = Core(p.base), []
    for inp, ok in zip(cycles, accepted, strict=True):
        for _ in range(inp.take):
            o = core.step(CycleIn(disp_ready=True))
            if o.disp_valid:
                out.append(o.disp_agent)
        for a, good in zip(inp.enq, ok, strict=False):
            if good:
                assert core.step(CycleIn(enq=(a, 1), disp_ready=False)).enq_ready
    return out


def check(p: WideParams, cycles: list[WideIn]) -> WideScheduler:
    wide = WideScheduler(p)
    outs = [wide.step(inp) for inp in cycles]
    lanes, accepted = software_run(p, cycles)
    for t, (o, want_lanes, want_ok) in enumerate(zip(outs, lanes, accepted, strict=True)):
        assert o.grants == want_lanes, f"cycle {t}: lanes {o.grants}, software {want_lanes}"
        assert o.enq_ready == want_ok, f"cycle {t}: accepted {o.enq_ready}, software {want_ok}"
    taken = [g for o, inp in zip(outs, cycles, strict=True) for g in o.grants[: inp.take]]
    assert taken == sequential_grants(p, cycles, accepted)
    assert wide.stats.decisions == len(taken)
    return wide


@pytest.mark.parametrize("width", [2, 4, 8, 12, 16])
@pytest.mark.parametrize("profile", WIDE_PROFILES)
def test_wide_equals_sequential_and_software(width: int, profile: str) -> None:
    """Widths 12 and 16 exceed the 8 agents: one cycle visits an agent more than once."""
    p = WideParams(HwParams(agents=8, depth=4), width)
    wide = check(p, list(wide_cycles(p, 1500 if width <= 8 else 500, seed=width, profile=profile)))
    assert wide.stats.decisions > 100


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**9))
def test_wide_equals_software_hypothesis(seed: int) -> None:
    r = random.Random(seed)
    p = WideParams(HwParams(agents=r.choice([2, 4, 8, 16]), depth=r.choice([1, 2, 4, 16])), r.randint(2, 16))
    cycles = list(wide_cycles(p, 300, seed, r.choice(WIDE_PROFILES)))
    check(p, cycles)


@pytest.mark.parametrize("width", [4, 16])
def test_one_backlogged_agent_gets_k_grants_in_one_cycle(width: int) -> None:
    p = WideParams(HwParams(agents=4, depth=2 * width), width)
    wide = WideScheduler(p)
    wide.step(WideIn((2,) * width, 0))
    wide.step(WideIn((2,) * width, 0))
    assert wide.step(WideIn((), width)).grants == (2,) * width


def test_width_above_agents_wraps_the_ring() -> None:
    """K = 16 over 4 agents: the j-th visit of agent i grants iff count_i > j, round after round."""
    p = WideParams(HwParams(agents=4, depth=8), 16)
    wide = WideScheduler(p)
    wide.step(WideIn((0, 1, 1, 1, 1, 1, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2), 0))  # counts 0:1 1:5 2:7 3:3
    assert wide.step(WideIn((), 5)).grants == (0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 1, 2, 2, 2)
    # ring start after the 5th grant (agent 1); counts now 0:0 1:3 2:6 3:2
    assert wide.step(WideIn((), 0)).grants == (2, 3, 1, 2, 3, 1, 2, 1, 2, 2, 2)


def test_agents_emptying_mid_cycle_and_ring_order() -> None:
    p = WideParams(HwParams(agents=4, depth=8), 8)
    wide = WideScheduler(p)
    wide.step(WideIn((3, 1, 1, 1, 0, 3, None, 2), 0))  # counts 0:1 1:3 2:1 3:2, ring start 0
    assert wide.step(WideIn((), 2)).grants == (0, 1, 2, 3, 1, 3, 1)  # 0 and 2 empty in round 0
    assert wide.step(WideIn((), 8)).grants == (2, 3, 1, 3, 1)  # start after the last taken (1)


def test_full_queue_ports_are_judged_in_port_order() -> None:
    p = WideParams(HwParams(agents=2, depth=2), 4)
    wide = WideScheduler(p)
    assert wide.step(WideIn((1, 1, 1, 0), 4)).enq_ready == (True, True, False, True)
    # the grants of this cycle do not make room: judged on the count at the start of the cycle
    assert wide.step(WideIn((1, 0, 0, 0), 4)).enq_ready == (False, True, False, False)
    assert wide.stats.enq_refused == 4


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"quantum": 2, "max_cost": 1}, "quantum=2"),
        ({"weights": (1, 2, 1, 1)}, "weights="),
        ({"quantum": 2, "max_cost": 2}, "max_cost=2"),
        ({"bucket_rate": 40}, "bucket_rate=40"),
    ],
)
def test_wide_params_refuse_non_unit_turns(change: dict, field: str) -> None:
    base = HwParams(agents=4, **change)
    with pytest.raises(ParamsError, match=field):
        WideParams(base, 4).validate()


def test_wide_params_refuse_width_and_accept_the_board_parameters() -> None:
    with pytest.raises(ParamsError, match="width=17"):
        WideParams(HwParams(), 17).validate()
    with pytest.raises(ParamsError, match="width=1"):
        WideParams(HwParams(), 1).validate()
    board = HwParams(agents=8, depth=64, mbox_depth=4)  # reports/hw/params-board.json
    assert WideParams(board, 16).validate().width == 16
