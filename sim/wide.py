"""Golden model of the K-wide scheduler: up to K decisions of the sequential rule per cycle (SPEC.md §8).

The wide scheduler is not a new policy: its cycle is *defined* as up to K decisions of the sequential
golden model (sim/model.py `Scheduler`, itself equal to runtime/scheduler.py) taken back to back on the
state registered at the start of the cycle, so the grant sequence is the sequential one, only issued K
at a time. Timing convention of one `step()` (one clock cycle):

* Lanes: lane k (k = 0..K-1) shows the k-th decision the sequential rule would make from the
  registered state if lanes 0..k-1 were taken; lane k is valid only if lanes < k are (a lane is
  invalid once no request is left). The consumer says how many lanes it takes (`take`, 0..K); the
  first min(take, valid lanes) decisions are applied at the edge, the others leave no trace (like
  not calling dispatch()).
* Enqueues: K ports. Port k offering agent a is accepted iff
  count_a + (ports j < k accepted for a this cycle) < depth, with count_a the queue length registered
  at the start of the cycle (this cycle's grants do not make room, as in §3). Accepted requests are
  appended in port order at the edge, after the cycle's decisions, so they are dispatchable from the
  next cycle (enqueue-to-dispatch 1 cycle, as at width 1).

Only the unit-turn case is supported (quantum x weight = 1 for every agent, max_cost 1, no quota):
there DRR is round robin with one grant per visit, which the RTL turns into a parallel selection of
the first K set bits (hw/wide_scheduler.py). `WideParams.validate()` refuses anything else.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

from .model import Scheduler, Stats
from .params import HwParams, ParamsError

WIDTHS = range(2, 17)  # lanes per cycle; 2, 4, 8 and 16 are the built ones


@dataclass(frozen=True)
class WideParams:
    """A scheduler parameter set plus the number of decisions per cycle."""

    base: HwParams
    width: int = 4

    @property
    def agents(self) -> int:
        return self.base.agents

    @property
    def depth(self) -> int:
        return self.base.depth

    def validate(self) -> WideParams:
        """Return self, or raise ParamsError naming the field the wide scheduler cannot implement."""
        p = self.base.validate()
        if self.width not in WIDTHS:
            raise ParamsError(f"width={self.width}: must be in [{WIDTHS.start}, {WIDTHS.stop - 1}]")
        why = "the wide scheduler supports unit turns only (round robin, one grant per visit; SPEC.md §8)"
        if p.max_cost != 1:
            raise ParamsError(f"max_cost={p.max_cost}: must be 1: {why}")
        if p.bucket_rate != 0:
            raise ParamsError(f"bucket_rate={p.bucket_rate}: must be 0 (no quota): {why}")
        if p.quantum != 1:
            raise ParamsError(f"quantum={p.quantum}: must be 1: {why}")
        if any(w != 1 for w in p.weights):
            raise ParamsError(f"weights={list(p.weights)}: must all be 1: {why}")
        return self


@dataclass(frozen=True)
class WideIn:
    """One cycle's inputs: per enqueue port the agent offered (None = idle), lanes the consumer takes."""

    enq: tuple[int | None, ...]
    take: int


@dataclass(frozen=True)
class WideOut:
    """One cycle's outputs (before the edge)."""

    grants: tuple[int, ...]  # the valid lanes' agents, lane 0 first
    enq_ready: tuple[bool, ...]  # per port: offered and accepted


@dataclass
class WideStats:
    cycles: int = 0
    decisions: int = 0
    enq_offered: int = 0
    enq_refused: int = 0
    latencies: list[int] = field(default_factory=list)  # enqueue-to-dispatch cycles per request


class WideScheduler:
    """K decisions of sim.model.Scheduler per cycle, K enqueue ports (module docstring)."""

    def __init__(self, params: WideParams) -> None:
        self.p = params.validate()
        self.seq = Scheduler(params.base)
        self.stats = WideStats()
        self.cycle = 0

    def reset(self) -> None:
        """Synchronous reset: queues emptied, ring position 0 (stats are kept)."""
        self.seq.reset()

    def lanes(self) -> tuple[int, ...]:
        """The next K decisions of the sequential rule from the registered state (state unchanged)."""
        trial, scratch = copy.deepcopy(self.seq), Stats()
        out = []
        for _ in range(self.p.width):
            g = trial.decide()
            if g is None:
                break
            out.append(g)
            trial.commit(True, None, self.cycle, scratch)
        return tuple(out)

    def judge(self, enq: Sequence[int | None]) -> tuple[bool, ...]:
        """Per port: accepted against the registered count plus earlier ports accepted for that agent."""
        taken = [len(q) for q in self.seq.queues]
        ok = []
        for agent in enq:
            accept = agent is not None and taken[agent] < self.p.depth
            if accept:
                taken[agent] += 1
            ok.append(accept)
        return tuple(ok)

    def step(self, inp: WideIn) -> WideOut:
        k, n = self.p.width, self.p.agents
        if len(inp.enq) > k or not 0 <= inp.take <= k:
            raise ValueError(f"cycle {self.cycle}: {len(inp.enq)} ports / take {inp.take} for width {k}")
        if any(a is not None and not 0 <= a < n for a in inp.enq):
            raise ValueError(f"cycle {self.cycle}: agent outside [0, {n}) in {inp.enq}")
        grants = self.lanes()
        ready = self.judge(inp.enq)
        st = self.stats
        st.cycles += 1
        for g in grants[: inp.take]:  # the taken decisions, exactly as the sequential model makes them
            before = st.decisions
            seq_stats = Stats()
            assert self.seq.decide() == g
            self.seq.commit(True, None, self.cycle, seq_stats)
            st.decisions = before + seq_stats.decisions
            st.latencies += seq_stats.latencies
        for agent, ok in zip(inp.enq, ready, strict=True):
            if agent is None:
                continue
            st.enq_offered += 1
            st.enq_refused += not ok
            if ok:  # stored by the sequential model's own edge (no consumer: no decision)
                self.seq.commit(False, (agent, 1), self.cycle, Stats())
        self.cycle += 1
        return WideOut(grants, ready + (False,) * (k - len(ready)))
