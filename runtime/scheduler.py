"""The project's one scheduling policy (software backend): weighted deficit round robin (DRR)
over per-agent FIFO queues, gated by a per-agent token bucket, with bounded queues.

It orders agents' requests (THINK calls, message delivery, world-step turns). The accelerator in
`hw/` implements the same rule and is checked equal on recorded traces, so the rule below is the
specification; the code follows it line by line. Nothing here reads a clock: every time is an
argument (`now_ns`), so replaying a trace reproduces every decision.

State
-----
* The **ring**: agents in the order `add_agent` was called (a removed agent leaves the ring; an
  agent added again goes to the end). A **pointer** names the current ring position, initially 0,
  and a flag `in_visit` says whether the current agent has already been granted its quantum.
* Per agent: FIFO queue of `(item, cost, enqueue_ns)`, at most `depth` entries; `deficit` (int,
  starts 0); `weight` (int >= 1); a token bucket (below).

Token bucket (fixed point, exact integers)
------------------------------------------
`rate_per_s == 0` means unlimited: the bucket check always passes and nothing is consumed.
Otherwise `rate_mt = round(rate_per_s * 1000)` (milli-tokens per second, must be >= 1) and the
level is kept in pico-tokens (`PICO = 10**12` per token): `cap = burst * PICO` (a `burst <= 0` means
1), level starts full. Refill happens only when the agent is examined by `dispatch(now_ns)`:
if the bucket has no time yet, its time becomes `now_ns` (no refill); else if `now_ns > time`,
`level = min(cap, level + rate_mt * (now_ns - time))` and time becomes `now_ns`; a time earlier
than the bucket's time refills nothing and leaves the time unchanged. (Because refill is linear
and capped, refilling lazily gives the same levels as refilling at every instant.) An agent is
**token-eligible** when its head cost `c` satisfies `level >= c * PICO`; dispatching consumes
`c * PICO`. A cost larger than `burst` could never pass, so `enqueue` refuses it with ValueError.

Decision rule: `dispatch(now_ns)`
---------------------------------
    if no item is queued: return None
    idle = 0                                  # consecutive visits that granted nothing
    loop:
        a = ring[pointer]
        if not in_visit:                      # arriving at a
            if a.queue is empty:              # (its deficit is already 0)
                advance; idle += 1
            else:
                refill(a, now_ns)
                if not token-eligible(a):     # throttled: no quantum, deficit kept
                    advance; idle += 1
                else:
                    a.deficit += quantum * a.weight; in_visit = True; idle = 0
            if idle == len(ring): return None # everything queued is throttled
            continue
        c = cost of a's head                  # in a visit, a's queue is non-empty
        refill(a, now_ns)
        if c <= a.deficit and token-eligible(a):
            pop the head; a.deficit -= c; consume c tokens
            if a.queue is empty: a.deficit = 0; advance
            return (a.id, item)               # in_visit stays True unless we advanced
        advance                               # deficit too small or out of tokens: deficit kept
    advance := in_visit = False; pointer = (pointer + 1) mod len(ring)

So one call returns at most one item; a visit may span several calls and ends when the head no
longer fits the deficit or the tokens, or the queue empties (deficit reset to 0). There are no
ties: the ring order decides. Enqueueing never moves the pointer or starts a visit.
`enqueue` on a full queue returns False (backpressure) and changes nothing but the refusal count.
`remove_agent` drops the agent's queue; if it was the current agent the pointer stays on the same
index (now the next agent, wrapping to 0) with `in_visit = False`; if it was before the pointer,
the pointer moves back by one so it still names the same agent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

PICO = 10**12  # bucket level units per token


@dataclass(slots=True)
class AgentStats:
    """Per-agent counters (what a trace's queue-wait column and the fairness checks need)."""

    enqueued: int = 0
    refused: int = 0  # enqueue on a full queue
    dispatched: int = 0
    served_cost: int = 0
    wait_ns: int = 0  # sum over dispatched items of max(0, dispatch now_ns - enqueue now_ns)


@dataclass(slots=True)
class _Agent:
    agent_id: int
    weight: int
    rate_mt: int  # milli-tokens per second; 0 = unlimited
    cap: int  # pico-tokens
    level: int
    time_ns: int | None = None
    deficit: int = 0
    queue: deque[tuple[Any, int, int]] = field(default_factory=deque)
    stats: AgentStats = field(default_factory=AgentStats)

    def refill(self, now_ns: int) -> None:
        if self.rate_mt == 0:
            return
        if self.time_ns is None:
            self.time_ns = now_ns
        elif now_ns > self.time_ns:
            self.level = min(self.cap, self.level + self.rate_mt * (now_ns - self.time_ns))
            self.time_ns = now_ns

    def has_tokens(self, cost: int) -> bool:
        return self.rate_mt == 0 or self.level >= cost * PICO


class Scheduler:
    """Weighted DRR with token buckets and bounded queues; see the module docstring for the exact rule.

    Not thread-safe: callers serialise access (LLMService holds its lock around every call).
    """

    def __init__(self, quantum: int = 1, depth: int = 64) -> None:
        if not isinstance(quantum, int) or quantum < 1:
            raise ValueError(f"Scheduler: quantum must be an int >= 1, got {quantum!r}")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Scheduler: depth must be an int >= 1, got {depth!r}")
        self.quantum = quantum
        self.depth = depth
        self._ring: list[_Agent] = []
        self._by_id: dict[int, _Agent] = {}
        self._pointer = 0
        self._in_visit = False
        self._total = 0

    def add_agent(self, agent_id: int, weight: int = 1, rate_per_s: float = 0.0, burst: int = 0) -> None:
        """Append an agent to the ring. `rate_per_s` 0 = unlimited; `burst` <= 0 means 1 token."""
        if agent_id in self._by_id:
            raise ValueError(f"Scheduler.add_agent: agent {agent_id} is already added")
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(
                f"Scheduler.add_agent: agent {agent_id}: weight must be an int >= 1, got {weight!r}"
            )
        if rate_per_s < 0:
            raise ValueError(
                f"Scheduler.add_agent: agent {agent_id}: rate_per_s must be >= 0, got {rate_per_s!r}"
            )
        rate_mt = round(rate_per_s * 1000)
        if rate_per_s > 0 and rate_mt == 0:
            raise ValueError(
                f"Scheduler.add_agent: agent {agent_id}: rate_per_s {rate_per_s!r} is below 0.001 (the resolution)"
            )
        cap = max(1, int(burst)) * PICO
        agent = _Agent(agent_id, weight, rate_mt, cap, cap)
        self._ring.append(agent)
        self._by_id[agent_id] = agent

    def remove_agent(self, agent_id: int) -> list[Any]:
        """Take an agent out of the ring; returns its undispatched items (oldest first)."""
        agent = self._agent(agent_id, "remove_agent")
        index = self._ring.index(agent)
        del self._ring[index]
        del self._by_id[agent_id]
        if index < self._pointer:
            self._pointer -= 1
        elif index == self._pointer:
            self._in_visit = False
            if self._pointer >= len(self._ring):
                self._pointer = 0
        self._total -= len(agent.queue)
        return [item for item, _, _ in agent.queue]

    def enqueue(self, agent_id: int, item: Any, cost: int = 1, now_ns: int = 0) -> bool:
        """Queue `item` for `agent_id`; False when its queue holds `depth` items (backpressure)."""
        agent = self._agent(agent_id, "enqueue")
        if not isinstance(cost, int) or cost < 1:
            raise ValueError(f"Scheduler.enqueue: agent {agent_id}: cost must be an int >= 1, got {cost!r}")
        if agent.rate_mt and cost * PICO > agent.cap:
            raise ValueError(
                f"Scheduler.enqueue: agent {agent_id}: cost {cost} exceeds its burst {agent.cap // PICO}"
                " and could never be dispatched"
            )
        if len(agent.queue) >= self.depth:
            agent.stats.refused += 1
            return False
        agent.queue.append((item, cost, now_ns))
        agent.stats.enqueued += 1
        self._total += 1
        return True

    def dispatch(self, now_ns: int = 0) -> tuple[int, Any] | None:
        """The next (agent_id, item) by the decision rule, or None if nothing is eligible now."""
        if self._total == 0:
            return None
        ring = self._ring
        idle = 0
        while True:
            agent = ring[self._pointer]
            if not self._in_visit:
                if not agent.queue:
                    idle += 1
                    self._advance()
                else:
                    agent.refill(now_ns)
                    if not agent.has_tokens(agent.queue[0][1]):
                        idle += 1
                        self._advance()
                    else:
                        agent.deficit += self.quantum * agent.weight
                        self._in_visit = True
                        idle = 0
                if idle == len(ring):
                    return None
                continue
            item, cost, enqueue_ns = agent.queue[0]
            agent.refill(now_ns)
            if cost <= agent.deficit and agent.has_tokens(cost):
                agent.queue.popleft()
                self._total -= 1
                agent.deficit -= cost
                if agent.rate_mt:
                    agent.level -= cost * PICO
                stats = agent.stats
                stats.dispatched += 1
                stats.served_cost += cost
                stats.wait_ns += max(0, now_ns - enqueue_ns)
                if not agent.queue:
                    agent.deficit = 0
                    self._advance()
                return agent.agent_id, item
            self._advance()

    def next_eligible_ns(self, now_ns: int) -> int | None:
        """Earliest time >= `now_ns` at which some queued head passes its token bucket (None: nothing
        queued). A pure query, so a caller can sleep until then instead of polling; no decision changes."""
        best: int | None = None
        for agent in self._ring:
            if not agent.queue:
                continue
            if agent.rate_mt == 0 or agent.time_ns is None:
                return now_ns
            base = max(now_ns, agent.time_ns)
            level = min(agent.cap, agent.level + agent.rate_mt * (base - agent.time_ns))
            need = agent.queue[0][1] * PICO - level
            at = base if need <= 0 else base + -(-need // agent.rate_mt)
            best = at if best is None else min(best, at)
        return best

    def pending(self, agent_id: int | None = None) -> int:
        """Items queued for one agent, or for all agents when `agent_id` is None."""
        if agent_id is None:
            return self._total
        return len(self._agent(agent_id, "pending").queue)

    def stats(self, agent_id: int) -> AgentStats:
        """The agent's counters (live object; copy it to keep a snapshot)."""
        return self._agent(agent_id, "stats").stats

    @property
    def agents(self) -> list[int]:
        """Agent ids in ring order."""
        return [agent.agent_id for agent in self._ring]

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._by_id

    def __len__(self) -> int:
        return self._total

    def _advance(self) -> None:
        self._in_visit = False
        self._pointer = (self._pointer + 1) % len(self._ring)

    def _agent(self, agent_id: int, where: str) -> _Agent:
        try:
            return self._by_id[agent_id]
        except KeyError:
            raise KeyError(f"Scheduler.{where}: unknown agent {agent_id} (call add_agent first)") from None
