"""Cycle-accurate golden model of the scheduler + mailbox core (SPEC.md is the normative text).

Timing convention: `step(inp)` is one clock cycle. Outputs are computed from the state registered at
the start of the cycle and this cycle's inputs (combinational paths, like the RTL); the state update is
what the rising edge at the end of the cycle stores. A request enqueued in cycle t is dispatchable in
t+1; a message sent in cycle t lands in its receivers' mailboxes at the edge ending t+1, so it is
receivable in t+2 and its data is out in the cycle after the recv (t+3 at the earliest).
The RTL (hw/) and the cocotb scoreboard compare against this class cycle for cycle.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .params import HwParams

TOKEN_ONE = 256  # bucket tokens are kept in 1/256 request units
POLICIES = ("drr", "fifo", "sp")  # the RTL implements drr; fifo/sp exist for the design-space sweep


@dataclass(frozen=True)
class CycleIn:
    """Inputs sampled during one cycle (None = the port is idle)."""

    enq: tuple[int, int] | None = None  # (agent, cost) of the request offered
    disp_ready: bool = True  # downstream accepts a dispatch this cycle
    send: tuple[int, int, int, bool] | None = None  # (src, dst, payload, broadcast)
    recv: int | None = None  # agent asking for its next message


@dataclass(frozen=True)
class CycleOut:
    """Outputs during one cycle (the values the RTL drives before the edge)."""

    enq_ready: bool
    disp_valid: bool
    disp_agent: int
    send_ready: bool
    recv_ready: bool
    rdata_valid: bool  # registered: the message of the previous cycle's recv transfer
    rdata_src: int
    rdata_payload: int


@dataclass
class Stats:
    """Counters the on-chip replayer also keeps (cycle counters, decisions, refusals)."""

    cycles: int = 0
    busy_cycles: int = 0  # cycles with a non-empty queue and a ready downstream
    decisions: int = 0
    enq_offered: int = 0
    enq_refused: int = 0  # offered to a full queue (the source drops or retries)
    sends: int = 0
    send_refused: int = 0
    recvs: int = 0
    latencies: list[int] = field(default_factory=list)  # enqueue-to-dispatch cycles per request


class Scheduler:
    """Weighted DRR over per-agent queues with token-bucket quotas: runtime/scheduler.py's rule, one
    decision per cycle (SPEC.md §3). `fifo` and `sp` are alternative policies for the sweep only."""

    def __init__(self, params: HwParams, policy: str = "drr") -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: expected one of {POLICIES}")
        self.p = params.validate()
        self.policy = policy
        self.turn = [params.quantum * params.weight(i) for i in range(params.agents)]
        self.cap = params.bucket_burst * TOKEN_ONE
        self.reset()

    def reset(self) -> None:
        n = self.p.agents
        self.queues: list[deque[tuple[int, int]]] = [deque() for _ in range(n)]  # (cost, enqueue cycle)
        self.deficit = [0] * n
        self.tokens = [self.cap] * n
        self.ptr = 0
        self.in_visit = False
        self.order: deque[int] = deque()  # global arrival order (fifo policy only)

    def ready(self, agent: int) -> bool:
        """Queue and bucket allow the head now."""
        q = self.queues[agent]
        return bool(q) and (self.p.bucket_rate == 0 or self.tokens[agent] >= q[0][0] * TOKEN_ONE)

    def _continues(self) -> bool:
        """The current visit goes on: its head fits the remaining deficit and the bucket."""
        p = self.ptr
        return self.in_visit and self.ready(p) and self.queues[p][0][0] <= self.deficit[p]

    def decide(self) -> int | None:
        """The agent granted this cycle if the downstream is ready, from registered state only."""
        n = self.p.agents
        if self.policy == "fifo":
            return next((a for a in self.order if self.ready(a)), None)
        if self.policy == "sp":
            return next((i for i in range(n) if self.ready(i)), None)
        p = self.ptr
        if self._continues():
            return p
        if self.in_visit:
            p += 1  # the visit ends, its deficit is kept
        return next(((p + k) % n for k in range(n) if self.ready((p + k) % n)), None)

    def commit(self, ready: bool, enq: tuple[int, int] | None, cycle: int, stats: Stats) -> None:
        """The edge: apply this cycle's decision (if the consumer was ready) and accepted enqueue
        (agent, cost), refill the buckets."""
        grant = self.decide() if ready else None
        n = self.p.agents
        if grant is not None:
            continues = self._continues()
            cost, t0 = self.queues[grant].popleft()
            if self.policy == "drr":
                if not continues:
                    self.deficit[grant] += self.turn[grant]  # arriving at the agent: one quantum
                self.deficit[grant] -= cost
                self.ptr, self.in_visit = grant, True
                if not self.queues[grant]:
                    self.deficit[grant] = 0  # an emptied queue forfeits its deficit; move on
                    self.ptr, self.in_visit = (grant + 1) % n, False
            elif self.policy == "fifo":
                self.order.remove(grant)
            if self.p.bucket_rate:
                self.tokens[grant] -= cost * TOKEN_ONE
            stats.decisions += 1
            stats.latencies.append(cycle - t0)
        elif ready and self.policy == "drr" and any(self.queues):
            if self.in_visit:  # nothing eligible: the loop ended one past the finished visit
                self.ptr, self.in_visit = (self.ptr + 1) % n, False
        if enq is not None:
            self.queues[enq[0]].append((enq[1], cycle))
            if self.policy == "fifo":
                self.order.append(enq[0])
        if self.p.bucket_rate:
            rate, cap = self.p.bucket_rate, self.cap
            self.tokens = [min(t + rate, cap) for t in self.tokens]


class Mailbox:
    """One shared message store with per-receiver pointer queues and reference counts (SPEC.md §4).

    A send is accepted in cycle t (its slot is reserved and its data stored at the edge ending t) and
    lands in the receivers' queues at the edge ending t+1; until then it already takes their room."""

    def __init__(self, params: HwParams) -> None:
        self.p = params.validate()
        self.reset()

    def reset(self) -> None:
        p = self.p
        self.free = [True] * p.slots
        self.refs = [0] * p.slots
        self.src = [0] * p.slots
        self.payload = [0] * p.slots
        self.queues: list[deque[int]] = [deque() for _ in range(p.agents)]
        self.rdata: tuple[bool, int, int] = (False, 0, 0)
        self.pending: int | None = None  # slot popped last cycle: its reference is released at this edge
        self.landing: tuple[int, list[int]] | None = None  # (slot, receivers) accepted last cycle

    def occupancy(self, agent: int) -> int:
        """Messages queued for `agent`, counting the one landing this cycle (what room is judged on)."""
        landing = self.landing is not None and agent in self.landing[1]
        return len(self.queues[agent]) + landing

    def send_ready(self, src: int, dst: int, broadcast: bool) -> bool:
        if True not in self.free:
            return False
        md = self.p.mbox_depth
        if broadcast:
            return all(self.occupancy(j) < md for j in range(self.p.agents) if j != src)
        return self.occupancy(dst) < md

    def recv_ready(self, agent: int) -> bool:
        return bool(self.queues[agent])

    def commit(self, send: tuple[int, int, int, bool] | None, recv: int | None) -> None:
        """The edge: release the reference popped in the previous cycle (a slot is free again two cycles
        after its last recv), pop an accepted recv into the read-data register, land the send accepted
        in the previous cycle, accept this cycle's send."""
        freed, self.pending, popped = self.pending, None, self.pending
        if popped is not None:
            self.refs[popped] -= 1
            freed = popped if self.refs[popped] == 0 else None
        if recv is not None:
            slot = self.queues[recv].popleft()
            self.rdata = (True, self.src[slot], self.payload[slot])
            self.pending = slot
        else:
            self.rdata = (False, 0, 0)
        if self.landing is not None:
            slot, dests = self.landing
            for j in dests:
                self.queues[j].append(slot)
            self.landing = None
        if send is not None:
            src, dst, payload, broadcast = send
            slot = self.free.index(True)
            dests = [j for j in range(self.p.agents) if j != src] if broadcast else [dst]
            self.free[slot] = False
            self.refs[slot] = len(dests)
            self.src[slot] = src
            self.payload[slot] = payload & ((1 << self.p.payload_bits) - 1)
            self.landing = (slot, dests)
        if freed is not None:
            self.free[freed] = True


class Core:
    """Scheduler + mailbox fabric clocked together: the unit the RTL `Core` implements."""

    def __init__(self, params: HwParams, policy: str = "drr") -> None:
        self.p = params.validate()
        self.sched = Scheduler(params, policy)
        self.mbox = Mailbox(params)
        self.stats = Stats()
        self.cycle = 0

    def reset(self) -> None:
        """Synchronous reset: every queue, bucket, pointer and message is cleared (stats are kept)."""
        self.sched.reset()
        self.mbox.reset()

    def step(self, inp: CycleIn) -> CycleOut:
        s, m, st = self.sched, self.mbox, self.stats
        grant = s.decide()
        if inp.enq is not None and not 1 <= inp.enq[1] <= self.p.max_cost:
            raise ValueError(f"cycle {self.cycle}: cost {inp.enq[1]} outside [1, max_cost={self.p.max_cost}]")
        enq_ready = inp.enq is not None and len(s.queues[inp.enq[0]]) < self.p.depth
        send_ready = inp.send is not None and m.send_ready(inp.send[0], inp.send[1], inp.send[3])
        recv_ready = inp.recv is not None and m.recv_ready(inp.recv)
        rvalid, rsrc, rpayload = m.rdata
        out = CycleOut(
            enq_ready, grant is not None, grant or 0, send_ready, recv_ready, rvalid, rsrc, rpayload
        )
        st.cycles += 1
        if inp.disp_ready and any(s.queues):
            st.busy_cycles += 1
        if inp.enq is not None:
            st.enq_offered += 1
            st.enq_refused += not enq_ready
        if inp.send is not None:
            st.sends += send_ready
            st.send_refused += not send_ready
        st.recvs += recv_ready
        s.commit(inp.disp_ready, inp.enq if enq_ready else None, self.cycle, st)
        m.commit(inp.send if send_ready else None, inp.recv if recv_ready else None)
        self.cycle += 1
        return out
