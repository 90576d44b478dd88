"""amaranth.sim: the K-wide scheduler RTL equals the wide golden model cycle for cycle (SPEC.md §8)."""

from __future__ import annotations

import pytest
from amaranth import ResetInserter, Signal
from amaranth.sim import Simulator
from clove_gym.hw.wide_scheduler import WideScheduler
from clove_gym.hw.wide_select import STRUCTURES
from clove_gym.hw.wide_top import WideCore
from clove_gym.sim import wide
from clove_gym.sim.params import HwParams
from clove_gym.sim.wide import WideIn, WideOut, WideParams
from clove_gym.sim.wide_stimulus import WIDE_PROFILES, wide_cycles


def scoreboard(
    p: WideParams, cycles: list[WideIn], structure: str = "chain", resets: frozenset[int] = frozenset()
) -> list[WideOut]:
    """Drive RTL and model with the same inputs, compare lanes and port readiness every cycle."""
    clear = Signal()
    dut = WideScheduler(p, structure)
    sim = Simulator(ResetInserter({"sync": clear})(dut))
    sim.add_clock(1e-6)
    ref = wide.WideScheduler(p)
    outs: list[WideOut] = []

    async def bench(ctx) -> None:
        for t, inp in enumerate(cycles):
            for x in range(p.width):
                a = inp.enq[x] if x < len(inp.enq) else None
                ctx.set(dut.enq[x].valid, a is not None)
                ctx.set(dut.enq[x].payload, a or 0)
            ctx.set(dut.take, inp.take)
            ctx.set(clear, t in resets)
            valid = ctx.get(dut.valid)
            got = WideOut(
                tuple(ctx.get(dut.grant[x]) for x in range(p.width) if valid >> x & 1),
                tuple(x < len(inp.enq) and inp.enq[x] is not None and bool(ctx.get(dut.enq[x].ready))
                      for x in range(p.width)),
            )  # fmt: skip
            assert valid & (valid + 1) == 0, f"cycle {t}: lanes {valid:b} are not a thermometer"
            want = ref.step(inp)
            if t in resets:
                ref.reset()
            assert got == want, f"cycle {t}: input {inp}\n rtl   {got}\n model {want}"
            assert bool(ctx.get(dut.busy)) == bool(want.grants)
            outs.append(want)
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return outs


@pytest.mark.parametrize("structure", STRUCTURES)
@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("profile", WIDE_PROFILES)
def test_wide_rtl_equals_model(structure: str, width: int, profile: str) -> None:
    p = WideParams(HwParams(agents=8, depth=4), width)
    outs = scoreboard(p, list(wide_cycles(p, 400, seed=width * 7 + len(profile), profile=profile)), structure)
    assert sum(len(o.grants) for o in outs) > 100


@pytest.mark.parametrize("structure", STRUCTURES)
def test_wide_rtl_small_rings_deep_queues_and_resets(structure: str) -> None:
    for agents, depth, width in [(2, 8, 4), (4, 1, 3), (16, 2, 5), (4, 64, 8)]:
        p = WideParams(HwParams(agents=agents, depth=depth), width)
        cycles = []
        for i, profile in enumerate(WIDE_PROFILES):
            cycles += list(wide_cycles(p, 150, seed=i + agents, profile=profile))
        scoreboard(p, cycles, structure, resets=frozenset({70, 71, 400, len(cycles) - 100}))


@pytest.mark.parametrize("width", [12, 16])
def test_wide_rtl_above_the_agent_count(width: int) -> None:
    """K > 8 agents (`rank`, the only selection offered there): one cycle visits an agent up to
    K / 8 + 1 times. One elaboration per width keeps the suite short: from reset a backlogged replay
    (exactly K decisions every cycle after the first), then one agent given K requests and K grants
    in one cycle, then every profile with a reset, the RTL equal to the model every cycle."""
    p = WideParams(HwParams(agents=8, depth=16), width)
    backlog = list(wide_cycles(p, 30, seed=0, profile="backlogged"))
    one_agent = [WideIn((5,) * width, 0), WideIn((), 0), WideIn((), width)]
    cycles = backlog + [WideIn((), width)] * 2 + one_agent  # two cycles drain the backlog
    for i, profile in enumerate(WIDE_PROFILES):
        cycles += list(wide_cycles(p, 30, seed=width + i, profile=profile))
    outs = scoreboard(p, cycles, "rank", resets=frozenset({len(cycles) - 70}))
    assert len(outs[0].grants) == 0 and all(len(o.grants) == width for o in outs[1:30])
    assert outs[32].grants == () and outs[34].grants == (5,) * width
    assert with_repeats(outs) > 10  # the ring wrapped within a cycle


def with_repeats(outs: list[WideOut]) -> int:
    """Cycles whose lanes grant some agent more than once."""
    return sum(len(set(o.grants)) < len(o.grants) for o in outs)


@pytest.mark.parametrize("width", [2, 4, 8])
def test_k_decisions_every_cycle_when_backlogged(width: int) -> None:
    """K enqueues per cycle in ring order and a consumer taking K: after the first cycle, every cycle
    shows K valid lanes (checked on the RTL, which the scoreboard also proves equal to the model)."""
    p = WideParams(HwParams(agents=8, depth=64), width)
    outs = scoreboard(p, list(wide_cycles(p, 300, seed=0, profile="backlogged")))
    assert len(outs[0].grants) == 0  # the first enqueues are stored at the edge
    assert all(len(o.grants) == width for o in outs[1:])


def test_board_core_elaborates_for_every_width() -> None:
    for width in (2, 4, 8):
        p = WideParams(HwParams(agents=8, depth=64), width)
        core = WideCore(p, "chain", leds=2)
        sim = Simulator(core)
        sim.add_clock(1e-6)
        seen = set()

        async def bench(ctx, core=core, seen=seen) -> None:
            for _ in range(200):
                seen.add(ctx.get(core.leds))
                await ctx.tick()

        sim.add_testbench(bench)
        sim.run()
        assert len(seen) > 1  # the checksum moves: the scheduler's grants reach the pins
