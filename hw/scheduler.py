"""Weighted-DRR scheduler with token buckets: one decision per cycle (sim/SPEC.md §3).

The software loop of runtime/scheduler.py walks the ring until a visit can serve; because every cost
fits one quantum (`max_cost <= quantum x min weight`), that walk is one rotating priority encoder
here: either the current visit continues, or the first agent at or after the next ring position with
a queued head that passes its bucket starts a visit and is served in the same cycle.
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from clove_gym.sim.model import TOKEN_ONE
from clove_gym.sim.params import HwParams

DEFICIT_BITS = 16  # with quotas (SPEC.md §3: the documented limit)


def deficit_bits(p: HwParams) -> int:
    """Width of a deficit register. With quotas a visit can end on an empty bucket and keep its deficit,
    so deficits grow (16 bits, the documented limit). Without, a visit only ends when its queue empties
    (deficit 0) or its head no longer fits (deficit < max_cost), so a stored deficit never exceeds
    max_cost - 1 + turn - 1: a few bits, and no 16-bit adders behind the grant."""
    if p.bucket_rate:
        return DEFICIT_BITS
    turn = p.quantum * max(p.weights or (1,))
    return max(1, (p.max_cost + turn - 2).bit_length())


def lowest_one_hot(m: Module, bits: Value, width: int) -> Signal:
    """The lowest set bit of `bits` alone (x & -x: one carry chain, fast on FPGAs)."""
    onehot = Signal(width)
    m.d.comb += onehot.eq(bits & (~bits + 1))
    return onehot


def encode(m: Module, onehot: Signal, width: int) -> Signal:
    """Binary index of a one-hot vector (an OR tree per output bit)."""
    idx = Signal(range(max(2, width)))
    m.d.comb += idx.eq(Cat(Cat(onehot[i] for i in range(width) if i >> b & 1).any() for b in range(len(idx))))
    return idx


def first_set(m: Module, bits: Value, width: int) -> tuple[Value, Signal]:
    """(any, index of the lowest set bit) of `bits`, as combinational signals."""
    return bits.any(), encode(m, lowest_one_hot(m, bits, width), width)


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
        deficit = Array(Signal(deficit_bits(p), name=f"deficit{i}") for i in range(n))
        ptr = Signal(n, init=1)  # the ring pointer, one-hot: no decoder or comparator on the decision path
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

        ready, fits, last = Signal(n), Signal(n), Signal(n)
        nonzero = Signal(n)  # registered count != 0: keeps the compare off the decision path
        for i in range(n):
            tok_ok = 1 if p.bucket_rate == 0 else tokens[i] >= head_cost[i] * TOKEN_ONE
            m.d.comb += [ready[i].eq(nonzero[i] & tok_ok), last[i].eq(count[i] == 1)]
            if p.max_cost > 1:
                # head_cost < 2**cost_bits, so deficit >= head_cost iff its high bits are non-zero or its
                # low bits reach the cost: a short compare instead of a 16-bit carry chain
                m.d.comb += fits[i].eq(
                    deficit[i][p.cost_bits :].any() | (deficit[i][: p.cost_bits] >= head_cost[i])
                )

        # the current visit continues, or the first ready agent at/after the scan's start (rotating
        # priority), in one priority encoder: `after` is a register, the agents strictly after the last
        # grant (the start is the ring position after it whether or not the visit went on); `cont_at`
        # adds the pointer itself when its visit can go on (it is then the lowest candidate, since only
        # agents past it are in `after`). The first candidate is the lowest set bit of
        # (ready & (after | cont_at), ready) read as one 2N-bit word, folded back.
        after = Signal(n, init=(1 << n) - 1)
        cont_at = Signal(n)
        m.d.comb += cont_at.eq(ptr & fits & in_visit.replicate(n))
        both = lowest_one_hot(m, Cat(ready & (after | cont_at), ready), 2 * n)
        onehot = Signal(n)
        m.d.comb += onehot.eq(both[:n] | both[n:])
        m.d.comb += [
            grant.eq(encode(m, onehot, n)),
            self.disp.valid.eq(ready.any()),  # some candidate exists iff some agent is ready
            self.disp.payload.eq(grant),
            self.enq.ready.eq(count[self.enq.payload.agent] < p.depth),
            self.busy.eq(nonzero.any()),
        ]

        # after a grant the pointer stays on it (the visit goes on) or moves one past it (its queue
        # empties): per bit a function of two neighbouring grant bits, no reduction over the grant
        stay, moves = Signal(n), Signal(n)
        m.d.comb += [stay.eq(onehot & ~last), moves.eq(onehot & last)]
        with m.If(disp_fire):
            m.d.sync += [
                after.eq(Cat(onehot[:i].any() for i in range(n))),  # the agents past the grant
                ptr.eq(stay | Cat(moves[n - 1], moves[: n - 1])),
                in_visit.eq(stay.any()),
            ]
        with m.Elif(self.disp.ready & self.busy & in_visit):
            m.d.sync += [ptr.eq(Cat(ptr[n - 1], ptr[: n - 1])), in_visit.eq(0)]

        for i in range(n):
            # written per agent so no N-way mux (enq.ready) or reduction (disp.valid: a set bit of the
            # one-hot grant implies it) sits in front of the enables
            inc = self.enq.valid & (self.enq.payload.agent == i) & (count[i] < p.depth)
            dec = self.disp.ready & onehot[i]
            # count +- 1 from the register alone; the grant only selects (no adder after the decision)
            with m.If(inc & ~dec):
                m.d.sync += count[i].eq(count[i] + 1)
            with m.Elif(dec & ~inc):
                m.d.sync += count[i].eq(count[i] - 1)
            with m.If(inc):
                m.d.sync += nonzero[i].eq(1)
            with m.Elif(dec & last[i]):
                m.d.sync += nonzero[i].eq(0)
            turn = p.quantum * p.weight(i)
            # unit costs: `fits` (deficit >= 1) is a register, its next value known before the grant is
            unit = p.max_cost == 1
            with m.If(dec):  # per-agent arithmetic in parallel; only the enable depends on the grant
                with m.If(last[i]):
                    m.d.sync += deficit[i].eq(0)
                    if unit:
                        m.d.sync += fits[i].eq(0)
                with m.Elif(cont_at[i]):  # registers only: granted with cont_at set is a continuation
                    m.d.sync += deficit[i].eq(deficit[i] - head_cost[i])
                    if unit:
                        m.d.sync += fits[i].eq(deficit[i][1:].any())  # deficit - 1 >= 1
                with m.Else():
                    m.d.sync += deficit[i].eq(deficit[i] + (turn - head_cost[i]))
                    if unit:
                        m.d.sync += fits[i].eq(
                            1 if turn >= 2 else deficit[i].any()
                        )  # deficit + turn - 1 >= 1
            if p.bucket_rate:
                spent = Mux(dec, head_cost[i] * TOKEN_ONE, 0)
                level = Signal(range(cap + p.bucket_rate + 1), name=f"level{i}")
                m.d.comb += level.eq(tokens[i] - spent + p.bucket_rate)
                m.d.sync += tokens[i].eq(Mux(level > cap, cap, level))
        return m
