"""K-wide scheduler: up to K decisions of the sequential DRR rule per cycle (SPEC.md §8).

Unit turns only (quantum x weight = 1, max_cost 1, no quota; `WideParams` refuses the rest). There DRR
is round robin with one grant per visit, so from the registered state (queue counts, ring start s)
the grant sequence is: walk the ring from s; the j-th time the walk reaches agent i it grants iff
count_i > j. With M_l = {i : count_i > l} (registered bit vectors) the sequence is the set bits, in
order, of the word seg_0 seg_1 ... seg_K where

    seg_0 = M_0 & ge(s),  seg_j = (M_{j-1} & lt(s)) | (M_j & ge(s)),  seg_K = M_{K-1} & lt(s)

(bit i of seg_j is agent i; the agents before s finish round j-1 in the same segment as the agents
from s start round j). The first K set bits are the K lanes (hw/wide_select.py). Nothing here is a
new policy: tests compare every lane with K steps of the sequential golden model (sim/wide.py).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from clove_gym.sim.wide import WideParams

from .scheduler import encode
from .wide_select import popcount, segment_ranks, select_lanes, thermometer_value


class WideScheduler(wiring.Component):
    """`enq[k]` (k < K) offers an agent; `valid`/`grant` show up to K lanes, the consumer takes `take`.

    `valid` is a thermometer (lane k valid only if lanes < k are); the first `take` valid lanes are
    dispatched at the edge. `structure` picks the lane selection (all three give the same lanes; `rank`
    is the fastest measured and the only one built above K = 8, SPEC.md §8)."""

    def __init__(self, params: WideParams, structure: str = "rank") -> None:
        self.p = params.validate()
        self.structure = structure
        k, ab = params.width, params.base.agent_bits
        super().__init__(
            {
                "enq": In(stream.Signature(ab)).array(k),
                "grant": Out(data.ArrayLayout(ab, k)),
                "valid": Out(k),
                "take": In(range(k + 1)),
                "busy": Out(1),  # some queue is non-empty
            }
        )

    def _ranked(
        self,
        m: Module,
        segs: list[Value],
        over: list[Signal],
        ge: Signal,
        valid: list[Signal],
        taken_pos: Signal,
        last_pos: Signal,
    ) -> list[Signal]:
        """`rank` structure: every bit's rank at once; lanes, taken and last bits compare it."""
        n, k = self.p.agents, self.p.width
        # set bits of agent i in segments < j: min(count_i, j) if i is at/after s, else min(count_i, j - 1)
        before = [[Const(0, 1)] * n]
        for j in range(1, k + 2):
            row = []
            for i in range(n):
                at = thermometer_value([over[level][i] for level in range(min(j, k))])
                lt = thermometer_value([over[level][i] for level in range(min(j - 1, k))])
                row.append(Mux(ge[i], at, lt))
            before.append(row)
        ranks, total = segment_ranks(m, segs, before, n)
        lanes = [Signal(n * (k + 1), name=f"lane{x}") for x in range(k)]
        taken, last = [], []
        for j, row in enumerate(ranks):
            for i, r in enumerate(row):
                bit = segs[j][i]
                for x in range(k):
                    m.d.comb += lanes[x][j * n + i].eq(bit & (r == x))
                t = bit & (r < self.take)
                taken.append(t)
                last.append(t & ((r + 1 == self.take) | (r + 1 == total)))
        m.d.comb += [taken_pos.eq(Cat(taken)), last_pos.eq(Cat(last))]
        m.d.comb += [valid[x].eq(total > x) for x in range(k)]
        return lanes

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n, k, depth = self.p.agents, self.p.width, self.p.depth
        count = [Signal(range(depth + 1), name=f"count{i}") for i in range(n)]
        over = [Signal(n, name=f"over{level}") for level in range(k)]  # M_l: bit i = count_i > l
        ge = Signal(n, init=(1 << n) - 1)  # agents at or after the ring start s

        segs = (
            [over[0] & ge] + [(over[j - 1] & ~ge) | (over[j] & ge) for j in range(1, k)] + [over[k - 1] & ~ge]
        )
        word = Signal(n * (k + 1))
        m.d.comb += word.eq(Cat(segs))
        taken_pos, last_pos = Signal(len(word)), Signal(len(word))
        valid = [Signal(name=f"valid{x}") for x in range(k)]
        if self.structure == "rank":
            lanes = self._ranked(m, segs, over, ge, valid, taken_pos, last_pos)
        else:
            lanes = select_lanes(m, word, len(word), k, self.structure)
            for x, lane in enumerate(lanes):
                m.d.comb += valid[x].eq(lane.any())
            # taken lanes: the first `take` valid ones; the last of them sets the new ring start
            is_taken = [valid[x] & (self.take > x) for x in range(k)]
            is_last = [
                is_taken[x] & ((self.take == x + 1) | (~valid[x + 1] if x + 1 < k else 1)) for x in range(k)
            ]
            m.d.comb += [
                taken_pos.eq(
                    Cat(Cat(lanes[x][p] & is_taken[x] for x in range(k)).any() for p in range(len(word)))
                ),
                last_pos.eq(
                    Cat(Cat(lanes[x][p] & is_last[x] for x in range(k)).any() for p in range(len(word)))
                ),
            ]

        # lane outputs: fold the segments onto the agents, then encode
        for lane_no, lane in enumerate(lanes):
            onehot = Signal(n, name=f"onehot{lane_no}")
            m.d.comb += onehot.eq(Cat(Cat(lane[j * n + i] for j in range(k + 1)).any() for i in range(n)))
            m.d.comb += self.grant[lane_no].eq(encode(m, onehot, n))
        m.d.comb += [self.valid.eq(Cat(valid)), self.busy.eq(over[0].any())]

        last_agent = Signal(n)
        m.d.comb += last_agent.eq(Cat(Cat(last_pos[j * n + i] for j in range(k + 1)).any() for i in range(n)))
        with m.If(last_agent.any()):
            m.d.sync += ge.eq(Cat(last_agent[:i].any() for i in range(n)))  # the agents after the last grant

        # enqueue ports: port x is judged against the registered count plus earlier ports for that agent
        counts = Array(count)
        agent_of = [self.enq[x].payload for x in range(k)]
        for x in range(k):
            ahead = popcount(
                [self.enq[y].valid & (agent_of[y] == agent_of[x]) for y in range(x)] or [Value.cast(0)]
            )
            m.d.comb += self.enq[x].ready.eq(counts[agent_of[x]] + ahead < depth)

        for i in range(n):
            # agent i's grants in rounds 0, 1, ...: segment r if i is at/after s, else segment r + 1
            rounds = [
                ge[i].bool() & taken_pos[r * n + i] | ~ge[i] & taken_pos[(r + 1) * n + i] for r in range(k)
            ]
            accepted = [self.enq[x].valid & self.enq[x].ready & (agent_of[x] == i) for x in range(k)]
            grown = Signal(range(depth + k + 1), name=f"count{i}_grown")  # count + accepted: no grant in it
            m.d.comb += grown.eq(count[i] + popcount(accepted))
            m.d.sync += count[i].eq(grown - popcount(rounds))
            # over_l' = grown - taken > l: with v = grown - l, taken < v is "not rounds[v - 1]", so the
            # compare is done on `grown` before the decision is known and the taken rounds only select
            for level in range(k):
                keep = [(grown == level + v) & ~rounds[v - 1] for v in range(1, k + 1)]
                m.d.sync += over[level][i].eq((grown > level + k) | Cat(keep).any())
        return m
