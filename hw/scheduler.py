"""Weighted-DRR scheduler with token buckets: one decision per cycle (sim/SPEC.md §3).

The software loop of runtime/scheduler.py walks the ring until a visit can serve; because every cost
fits one quantum (`max_cost <= quantum x min weight`), that walk is one rotating priority encoder
here: either the current visit continues, or the first agent at or after the next ring position with
a queued head that passes its bucket starts a visit and is served in the same cycle.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from clove_gym.sim.model import TOKEN_ONE
from clove_gym.sim.params import HwParams

DEFICIT_BITS = 16


def first_set(m: Module, bits: Signal, width: int) -> tuple[Signal, Signal]:
    """(any, index of the lowest set bit) of `bits`, as combinational signals."""
    idx = Signal(range(max(2, width)))
    for i in reversed(range(width)):
        with m.If(bits[i]):
            m.d.comb += idx.eq(i)
    return bits.any(), idx


class Scheduler(wiring.Component):
    """`enq` takes (agent, cost) when that agent's queue has room; `disp` offers the granted agent."""

    def __init__(self, params: HwParams) -> None:
        self.p = params.validate()
        self.enq_layout = data.StructLayout({"agent": params.agent_bits, "cost": params.cost_bits})
        super().__init__(
            {
                "enq": In(stream.Signature(self.enq_layout)),
                "disp": Out(stream.Signature(params.agent_bits)),
                "busy": Out(1),  # some queue is non-empty
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        n = p.agents
        count = Array(Signal(range(p.depth + 1), name=f"count{i}") for i in range(n))
        deficit = Array(Signal(DEFICIT_BITS, name=f"deficit{i}") for i in range(n))
        ptr = Signal(p.agent_bits)
        in_visit = Signal()
        cap = p.bucket_burst * TOKEN_ONE
        tokens = Array(Signal(range(cap + 1), init=cap, name=f"tokens{i}") for i in range(n))

        # per-agent cost FIFOs only when costs vary; with max_cost 1 every head costs 1
        head_cost = Array(Signal(p.cost_bits, name=f"head_cost{i}") for i in range(n))
        enq_fire = self.enq.valid & self.enq.ready
        disp_fire = self.disp.valid & self.disp.ready
        grant = Signal(p.agent_bits)
        for i in range(n):
            if p.max_cost == 1:
                m.d.comb += head_cost[i].eq(1)
                continue
            mem = memory.Memory(shape=p.cost_bits, depth=p.depth, init=[])
            m.submodules[f"costs{i}"] = mem
            rd, wr = mem.read_port(domain="comb"), mem.write_port()
            rptr = Signal(range(p.depth), name=f"rptr{i}")
            wptr = Signal(range(p.depth), name=f"wptr{i}")
            m.d.comb += [
                rd.addr.eq(rptr),
                head_cost[i].eq(rd.data),
                wr.addr.eq(wptr),
                wr.data.eq(self.enq.payload.cost),
                wr.en.eq(enq_fire & (self.enq.payload.agent == i)),
            ]
            with m.If(wr.en):
                m.d.sync += wptr.eq(wptr + 1 if p.depth > 1 else 0)
            with m.If(disp_fire & (grant == i)):
                m.d.sync += rptr.eq(rptr + 1 if p.depth > 1 else 0)

        ready = Signal(n)
        for i in range(n):
            tok_ok = 1 if p.bucket_rate == 0 else tokens[i] >= head_cost[i] * TOKEN_ONE
            m.d.comb += ready[i].eq((count[i] != 0) & tok_ok)

        cont = Signal()
        m.d.comb += cont.eq(in_visit & ready.bit_select(ptr, 1) & (head_cost[ptr] <= deficit[ptr]))
        start = Signal(p.agent_bits)
        m.d.comb += start.eq(ptr + in_visit)
        rotated = Signal(n)
        m.d.comb += rotated.eq(Cat(ready, ready).bit_select(start, n))
        found, offset = first_set(m, rotated, n)
        m.d.comb += [
            grant.eq(Mux(cont, ptr, (start + offset)[: p.agent_bits])),
            self.disp.valid.eq(cont | found),
            self.disp.payload.eq(grant),
            self.enq.ready.eq(count[self.enq.payload.agent] < p.depth),
            self.busy.eq(Cat(c != 0 for c in count).any()),
        ]

        turn = Array(Const(p.quantum * p.weight(i), DEFICIT_BITS) for i in range(n))
        with m.If(disp_fire):
            g = grant
            base = Mux(cont, deficit[g], deficit[g] + turn[g])
            with m.If(count[g] == 1):
                m.d.sync += [deficit[g].eq(0), ptr.eq(g + 1), in_visit.eq(0)]
            with m.Else():
                m.d.sync += [deficit[g].eq(base - head_cost[g]), ptr.eq(g), in_visit.eq(1)]
        with m.Elif(self.disp.ready & self.busy & in_visit):
            m.d.sync += [ptr.eq(ptr + 1), in_visit.eq(0)]

        for i in range(n):
            inc = enq_fire & (self.enq.payload.agent == i)
            dec = disp_fire & (grant == i)
            m.d.sync += count[i].eq(count[i] + inc - dec)
            if p.bucket_rate:
                spent = Mux(dec, head_cost[i] * TOKEN_ONE, 0)
                level = Signal(range(cap + p.bucket_rate + 1), name=f"level{i}")
                m.d.comb += level.eq(tokens[i] - spent + p.bucket_rate)
                m.d.sync += tokens[i].eq(Mux(level > cap, cap, level))
        return m
