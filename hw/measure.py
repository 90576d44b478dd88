"""The measurements behind `clove-gym hw report`: latencies and decision rate on the Verilated RTL,
decisions/s of the software scheduler, harness and cocotb speed. Each returns plain numbers."""

from __future__ import annotations

import hashlib
import re
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from clove_gym.runtime.scheduler import Scheduler as SoftwareScheduler
from clove_gym.sim import model
from clove_gym.sim.backends import Tick, TickResult
from clove_gym.sim.model import CycleIn
from clove_gym.sim.params import HwParams
from clove_gym.sim.wide import WideParams
from clove_gym.sim.workload import cycles_of, load_events

from .toolchain import ToolchainError
from .verilate import BUILD, replay


def spread(samples: Sequence[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements."""
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def rtl_latencies(params: HwParams) -> dict[str, int]:
    """Enqueue-to-dispatch and send-to-recv-data cycles on the Verilated Core, uncontended."""
    idle = CycleIn()
    stim = [CycleIn(enq=(1, 1), disp_ready=False), idle, idle, idle]
    out = replay(params, stim).outputs
    enq_to_disp = next(t for t, o in enumerate(out) if o.disp_valid)
    recv = CycleIn(recv=2)  # offered every cycle until the message has landed
    stim = [CycleIn(send=(0, 2, 0x5A, False)), recv, recv, recv, idle, idle]
    out = replay(params, stim).outputs
    send_to_data = next(t for t, o in enumerate(out) if o.rdata_valid and o.rdata_payload == 0x5A)
    return {"enqueue_to_dispatch_cycles": enq_to_disp, "send_to_recv_data_cycles": send_to_data}


def rtl_decision_rate(params: HwParams, traces: Sequence[str], ns_per_cycle: float, max_gap: int) -> dict:
    """Decisions per cycle while some queue is non-empty, replaying the traces on the Verilated Core.

    Busy cycles are counted from the RTL's own outputs: a cycle where it offers a dispatch is busy; a
    cycle where queued work is held back by the buckets would show as busy without a dispatch, so the
    golden model's queue state is used to count those (the two agree cycle for cycle, tested)."""
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
    """Verilator direct-harness cycles/s over `runs` runs (median, spread of wall-clock rates).

    The profile-guided harness build, with the harness comparing every cycle of every pass against
    the golden model's outputs (a mismatch raises), so the rate is that of a checked replay. The CPU
    time rates are kept too: on a busy machine they show how much of the spread is waiting."""
    ref = model.Core(params)
    want = [ref.step(inp) for inp in cycles]
    done = [replay(params, cycles, repeat=repeat, expect=want, pgo=True) for _ in range(runs)]
    return spread([r.cycles_per_s for r in done]) | {
        "cycles_per_run": done[0].cycles,
        "checked_cycles_per_run": done[0].checked,
        "cpu": spread([r.cycles_per_cpu_s for r in done]),
    }


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


def drr_twin(build_root: Path = BUILD) -> Path:
    """The C twin of the scheduling rule (hw/harness/drr.c), compiled once with the system C compiler."""
    src = Path(__file__).parent / "harness" / "drr.c"
    exe = build_root / f"drr-{hashlib.sha256(src.read_bytes()).hexdigest()[:12]}"
    if not exe.exists():
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise ToolchainError("no C compiler (cc/gcc) for the C scheduler twin: apt-get install gcc")
        build_root.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_suffix(".tmp")
        proc = subprocess.run([cc, "-O2", "-o", str(tmp), str(src)], capture_output=True, text=True)
        if proc.returncode:
            raise ToolchainError(f"compiling {src} failed: {proc.stderr.strip()}")
        tmp.replace(exe)
    return exe


def c_twin_run(params: HwParams, ticks: Sequence[Tick]) -> list[TickResult]:
    """Decisions of the C twin on the same ticks as sim.backends (uniform weights only)."""
    if params.weights and len(set(params.weights)) > 1:
        raise ValueError("the C twin implements a uniform quantum: give params without per-agent weights")
    exe = drr_twin()
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "in", Path(d) / "out"
        src.write_bytes(b"".join(struct.pack("<iii", *(t.enq or (-1, 0)), int(t.ready)) for t in ticks))
        q = params.quantum * params.weight(0)
        args = [params.agents, params.depth, q, params.bucket_rate, params.bucket_burst]
        subprocess.run([str(exe), "replay", *map(str, args), str(src), str(dst)], check=True)
        raw = dst.read_bytes()
    out = struct.iter_unpack("<ii", raw)
    return [TickResult(None if g < 0 else g, bool(a)) for g, a in out]


def c_decisions_per_s(agents: int, decisions: int = 20_000_000, runs: int = 5) -> dict:
    """The C twin with every queue kept non-empty."""
    exe = drr_twin()
    rates = []
    for _ in range(runs):
        out = subprocess.run([str(exe), "bench", str(agents), str(decisions)], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
        d, s = re.search(r"decisions (\d+) seconds ([0-9.]+)", out).groups()
        rates.append(int(d) / float(s))
    return spread(rates)


def wide_decisions_per_cycle(params: WideParams, cycles: int = 400, structure: str = "rank") -> dict:
    """Decisions per cycle of the K-wide RTL (amaranth.sim) in a backlogged replay: K enqueues per cycle
    in ring order, the consumer taking K. Every cycle is checked against the wide golden model; the
    decisions are counted from the RTL's own lanes (valid and taken), after the first cycle (its
    enqueues land at the edge)."""
    from amaranth.sim import Simulator
    from clove_gym.sim.wide import WideScheduler as WideModel
    from clove_gym.sim.wide_stimulus import wide_cycles

    from .wide_scheduler import WideScheduler

    k = params.width
    dut, ref = WideScheduler(params, structure), WideModel(params)
    stim = list(wide_cycles(params, cycles, seed=0, profile="backlogged"))
    taken: list[int] = []

    async def bench(ctx) -> None:
        for t, inp in enumerate(stim):
            for x in range(k):
                ctx.set(dut.enq[x].valid, inp.enq[x] is not None)
                ctx.set(dut.enq[x].payload, inp.enq[x] or 0)
            ctx.set(dut.take, inp.take)
            valid = ctx.get(dut.valid)
            lanes = tuple(ctx.get(dut.grant[x]) for x in range(k) if valid >> x & 1)
            if lanes != ref.step(inp).grants:
                raise AssertionError(f"cycle {t}: wide RTL lanes {lanes} differ from the wide model")
            taken.append(min(inp.take, len(lanes)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    steady = taken[1:]
    return {
        "width": k,
        "cycles": len(steady),
        "decisions": sum(steady),
        "decisions_per_cycle": sum(steady) / len(steady),
        "min_per_cycle": min(steady),
    }
