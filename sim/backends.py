"""Scheduler backends: `software` (runtime/scheduler.py), `model` (the golden model), `rtl` (hw/).

Every backend answers the same cycle-stepped interface, so the runtime can take its decisions from any
of them and a test can prove they agree. The cycle convention (SPEC.md §5): per cycle the backend first
judges the offered enqueue against the queue as it was at the start of the cycle, then makes at most
one dispatch decision (if the consumer is ready), then stores the accepted enqueue (dispatchable from
the next cycle). The software scheduler reads time only through `now_ns`: one cycle = 1 ns.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from clove_gym.runtime.scheduler import Scheduler as SoftwareScheduler

from .model import TOKEN_ONE, Core, CycleIn
from .params import HwParams

PICO_PER_TOKEN = 10**12  # runtime/scheduler.py keeps bucket levels in pico-tokens


@dataclass(frozen=True)
class Tick:
    """One cycle of scheduler stimulus."""

    enq: tuple[int, int] | None = None  # (agent slot, cost) offered this cycle
    ready: bool = True  # the consumer takes a dispatch this cycle


@dataclass(frozen=True)
class TickResult:
    grant: int | None  # agent dispatched this cycle
    accepted: bool  # the offered enqueue was stored (False also when none was offered)


class SchedulerBackend(Protocol):
    """What the runtime needs from a decision maker: one call per cycle."""

    name: str

    def tick(self, t: Tick) -> TickResult: ...


class ModelBackend:
    """The cycle-accurate golden model (sim/model.py)."""

    name = "model"

    def __init__(self, params: HwParams) -> None:
        self.core = Core(params)

    def tick(self, t: Tick) -> TickResult:
        out = self.core.step(CycleIn(enq=t.enq, disp_ready=t.ready))
        return TickResult(out.disp_agent if out.disp_valid and t.ready else None, out.enq_ready)


class SoftwareBackend:
    """runtime/scheduler.py driven with now_ns = cycle, its buckets scaled to the RTL's 1/256 units."""

    name = "software"

    def __init__(self, params: HwParams) -> None:
        self.p = params.validate()
        self.sched = SoftwareScheduler(quantum=params.quantum, depth=params.depth)
        # bucket_rate/256 tokens per cycle == rate_mt pico-tokens per ns (exact: 10**12 / 256 is integral)
        rate_per_s = params.bucket_rate * (PICO_PER_TOKEN // TOKEN_ONE) / 1000
        for a in range(params.agents):
            self.sched.add_agent(a, weight=params.weight(a), rate_per_s=rate_per_s, burst=params.bucket_burst)
        self.cycle = 0

    def tick(self, t: Tick) -> TickResult:
        now = self.cycle
        full = t.enq is not None and self.sched.pending(t.enq[0]) >= self.p.depth
        got = self.sched.dispatch(now_ns=now) if t.ready else None
        accepted = t.enq is not None and not full
        if accepted:
            assert t.enq is not None
            accepted = self.sched.enqueue(t.enq[0], now, cost=t.enq[1], now_ns=now)
        self.cycle += 1
        return TickResult(None if got is None else got[0], accepted)


def run_backend(backend: SchedulerBackend, ticks: Iterable[Tick]) -> list[TickResult]:
    """Every cycle's result, in order."""
    return [backend.tick(t) for t in ticks]


def first_divergence(a: Sequence[TickResult], b: Sequence[TickResult]) -> int | None:
    """Index of the first cycle where two runs differ (or where one ends early), else None."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))
