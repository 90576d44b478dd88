"""The measurements behind `clove-gym hw report`: latencies and decision rate on the Verilated RTL,
decisions/s of the software scheduler, harness and cocotb speed. Each returns plain numbers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from clove_gym.runtime.scheduler import Scheduler as SoftwareScheduler
from clove_gym.sim.model import CycleIn
from clove_gym.sim.params import HwParams
from clove_gym.sim.workload import cycles_of, load_events

from .verilate import replay


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def rtl_latencies(params: HwParams) -> dict[str, int]:
    """Enqueue-to-dispatch and send-to-recv-data cycles on the Verilated Core, uncontended."""
    idle = CycleIn()
    stim = [CycleIn(enq=(1, 1), disp_ready=False), idle, idle, idle]
    out = replay(params, stim).outputs
    enq_to_disp = next(t for t, o in enumerate(out) if o.disp_valid)
    stim = [CycleIn(send=(0, 2, 0x5A, False)), CycleIn(recv=2), idle, idle]
    out = replay(params, stim).outputs
    send_to_data = next(t for t, o in enumerate(out) if o.rdata_valid and o.rdata_payload == 0x5A)
    return {"enqueue_to_dispatch_cycles": enq_to_disp, "send_to_recv_data_cycles": send_to_data}


def rtl_decision_rate(params: HwParams, traces: Sequence[str], ns_per_cycle: float, max_gap: int) -> dict:
    """Decisions per cycle while some queue is non-empty, replaying the traces on the Verilated Core.

    Busy cycles are counted from the RTL's own outputs: a cycle where it offers a dispatch is busy; a
    cycle where queued work is held back by the buckets would show as busy without a dispatch, so the
    golden model's queue state is used to count those (the two agree cycle for cycle, tested)."""
    from clove_gym.sim import model

    cycles = list(cycles_of(load_events(list(traces), params, ns_per_cycle, max_gap), 64))
    run = replay(params, cycles)
    ref = model.Core(params)
    for inp in cycles:
        ref.step(inp)
    decisions = sum(o.disp_valid for o in run.outputs)
    return {
        "cycles": len(cycles),
        "busy_cycles": ref.stats.busy_cycles,
        "decisions": decisions,
        "decisions_per_busy_cycle": decisions / max(1, ref.stats.busy_cycles),
    }


def harness_speed(params: HwParams, cycles: Sequence[CycleIn], repeat: int, runs: int = 3) -> dict:
    """Verilator direct-harness cycles/s over `runs` runs (median, spread)."""
    rates = [replay(params, cycles, repeat=repeat).cycles_per_s for _ in range(runs)]
    return spread(rates) | {"cycles_per_run": len(cycles) * repeat}


def software_decisions_per_s(agents: int, decisions: int = 200_000, runs: int = 5) -> dict:
    """runtime/scheduler.py with every queue kept non-empty: one enqueue + one dispatch per decision."""

    def once() -> float:
        s = SoftwareScheduler(quantum=1, depth=64)
        for a in range(agents):
            s.add_agent(a)
            for _ in range(32):
                s.enqueue(a, None)
        dispatch, enqueue = s.dispatch, s.enqueue
        t0 = time.perf_counter()
        for now in range(decisions):
            got = dispatch(now)
            enqueue(got[0], None, 1, now)
        return decisions / (time.perf_counter() - t0)

    return spread([once() for _ in range(runs)])
