"""Where the THINK queue's decisions come from: the software Scheduler (default) or a named backend.

The design rule says `runtime` never imports `hw` or `sim`, yet issue 4 wants the kernel to take its
scheduling decisions from the Verilated RTL or a board. So the runtime owns only two small things:

* `DecisionSource`, the interface a backend implements: it is told which agents exist and what was
  enqueued, and answers *which agent* goes next. It never sees the requests themselves.
* `BackendQueue`, a drop-in for `Scheduler` (the methods `LLMService` calls) that keeps each agent's
  requests in FIFO order here and pops the head of whichever agent the source grants.

Backends are found by name through the entry-point group `clove_gym.scheduler_backends` (the `hw`
package declares `rtl`, `fpga` and `model`), so nothing here imports them. A spec is
`NAME[:KEY=VALUE,...]` (e.g. `rtl:params=reports/hw/params.json`); the options go to the backend's
factory unparsed. An unknown name, or a backend whose factory fails (Verilator missing, no board),
raises SchedulerBackendError naming the backend and the reason: never a silent fallback to software.

What a source does not have: wall-clock token buckets. The hardware's buckets count clock cycles,
and one queue call is one cycle, so a per-agent `rate_per_s` cannot be mapped faithfully; it is
refused (only `software` keeps rate limits). Without buckets every queued request is eligible, so a
source must grant whenever anything is queued; a source that grants nothing then (or grants an
agent with nothing queued) disagrees with the runtime's queue and is reported as failed.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from clove_gym.runtime.scheduler import AgentStats, Scheduler

ENTRY_POINT_GROUP = "clove_gym.scheduler_backends"
ENV = "CLOVE_SCHEDULER"  # the spec embedded kernels and LLMService() use when none is given
SOFTWARE = "software"


class SchedulerBackendError(RuntimeError):
    """A scheduler backend that is unknown, cannot start, or failed while deciding."""


class DecisionSource(Protocol):
    """A decision maker for the THINK queue; calls are serialised by the caller (LLMService's lock)."""

    name: str

    def add_agent(self, agent_id: int, weight: int) -> None:
        """Give the agent a place in the ring; raise ValueError when the backend has none for it."""

    def remove_agent(self, agent_id: int) -> None:
        """The agent left; its queued entries are dropped by the runtime (the source may drain them)."""

    def enqueue(self, agent_id: int, cost: int) -> bool:
        """Offer one request; False = the backend's queue for this agent is full (backpressure)."""

    def dispatch(self) -> int | None:
        """The agent whose head request runs now, by the backend's decision."""

    def close(self) -> None: ...


Factory = Callable[[dict[str, str]], DecisionSource]


@dataclass(frozen=True)
class Spec:
    """A parsed `NAME[:KEY=VALUE,...]`."""

    name: str
    options: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Spec:
        name, _, rest = text.strip().partition(":")
        if not name:
            raise SchedulerBackendError(f"scheduler spec {text!r}: no backend name")
        options: dict[str, str] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise SchedulerBackendError(
                    f"scheduler backend {name!r}: option {item!r} is not KEY=VALUE (spec {text!r})"
                )
            options[key.strip()] = value.strip()
        if name == SOFTWARE and options:
            raise SchedulerBackendError(f"scheduler backend 'software' takes no options, got {options}")
        return cls(name, options)


def available() -> list[str]:
    """Backend names: `software` and every installed entry point of the group."""
    return [SOFTWARE, *sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))]


def open_queue(spec: str | None = None) -> Scheduler | BackendQueue:
    """The THINK queue for a spec (None: $CLOVE_SCHEDULER, else software). Raises SchedulerBackendError."""
    text = spec if spec is not None else os.environ.get(ENV) or SOFTWARE
    parsed = Spec.parse(text)
    if parsed.name == SOFTWARE:
        return Scheduler()
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == parsed.name]
    if not found:
        raise SchedulerBackendError(
            f"unknown scheduler backend {parsed.name!r}: expected one of {available()}"
            f" (entry points of the group {ENTRY_POINT_GROUP!r})"
        )
    try:
        factory: Factory = found[0].load()
        source = factory(parsed.options)
    except Exception as exc:  # whatever the backend raises, the kernel must not start without it
        raise SchedulerBackendError(
            f"scheduler backend {parsed.name!r} cannot start: {type(exc).__name__}: {exc}"
        ) from exc
    return BackendQueue(source)


def spec_name(spec: str | None) -> str:
    """The backend name a spec (or $CLOVE_SCHEDULER, or the default) selects."""
    return Spec.parse(spec if spec is not None else os.environ.get(ENV) or SOFTWARE).name


class BackendQueue:
    """`Scheduler`'s interface over a DecisionSource: requests stay here, the source picks the agent.

    Not thread-safe, like Scheduler: LLMService holds its lock around every call. Arguments are
    checked as Scheduler checks them; anything the source raises beyond its documented ValueError
    refusals becomes SchedulerBackendError and marks the queue failed: later decisions raise the
    same error, while removing agents, `drain` and `close` still work (without the source).
    """

    def __init__(self, source: DecisionSource) -> None:
        self.source = source
        self.name = source.name
        self._queues: dict[int, deque[tuple[Any, int, int]]] = {}  # agent -> (item, cost, enqueue_ns)
        self._stats: dict[int, AgentStats] = {}
        self._total = 0
        self.failed: str | None = None

    def add_agent(self, agent_id: int, weight: int = 1, rate_per_s: float = 0.0, burst: int = 0) -> None:
        """Append an agent to the backend's ring; rate limits are refused (see the module docstring)."""
        where = f"scheduler backend {self.name!r}: agent {agent_id}"
        if agent_id in self._queues:
            raise ValueError(f"{where} is already added")
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(f"{where}: weight must be an int >= 1, got {weight!r}")
        if rate_per_s != 0:
            raise ValueError(
                f"{where}: a token bucket (rate_per_s={rate_per_s!r}) cannot be mapped: the backend's"
                " buckets count clock cycles, not wall time; use the software scheduler for rate limits"
            )
        self._guard(self.source.add_agent, agent_id, weight)
        self._queues[agent_id] = deque()
        self._stats[agent_id] = AgentStats()

    def remove_agent(self, agent_id: int) -> list[Any]:
        """Take an agent out; returns its undispatched items (oldest first)."""
        queue = self._queue(agent_id, "remove_agent")
        if self.failed is None:
            self._guard(self.source.remove_agent, agent_id)
        del self._queues[agent_id]
        del self._stats[agent_id]
        self._total -= len(queue)
        return [item for item, _, _ in queue]

    def enqueue(self, agent_id: int, item: Any, cost: int = 1, now_ns: int = 0) -> bool:
        """Queue `item` when the backend accepts the request; False = its queue is full (backpressure)."""
        queue = self._queue(agent_id, "enqueue")
        if not isinstance(cost, int) or cost < 1:
            raise ValueError(
                f"BackendQueue.enqueue: agent {agent_id}: cost must be an int >= 1, got {cost!r}"
            )
        stats = self._stats[agent_id]
        if not self._guard(self.source.enqueue, agent_id, cost):
            stats.refused += 1
            return False
        queue.append((item, cost, now_ns))
        stats.enqueued += 1
        self._total += 1
        return True

    def dispatch(self, now_ns: int = 0) -> tuple[int, Any] | None:
        """The next (agent_id, item) by the backend's decision, or None when nothing is queued."""
        if self._total == 0:
            return None
        agent_id = self._guard(self.source.dispatch)
        queue = self._queues.get(agent_id) if agent_id is not None else None
        if not queue:
            self.failed = (
                f"scheduler backend {self.name!r} granted {agent_id!r} while the runtime queues"
                f" {self._total} request(s), none for that agent: the backend disagrees with the queue"
            )
            raise SchedulerBackendError(self.failed)
        item, cost, enqueue_ns = queue.popleft()
        self._total -= 1
        stats = self._stats[agent_id]
        stats.dispatched += 1
        stats.served_cost += cost
        stats.wait_ns += max(0, now_ns - enqueue_ns)
        return agent_id, item

    def next_eligible_ns(self, now_ns: int) -> int | None:
        """Without buckets anything queued is eligible now (None: nothing queued)."""
        return now_ns if self._total else None

    def pending(self, agent_id: int | None = None) -> int:
        if agent_id is None:
            return self._total
        return len(self._queue(agent_id, "pending"))

    def stats(self, agent_id: int) -> AgentStats:
        self._queue(agent_id, "stats")
        return self._stats[agent_id]

    @property
    def agents(self) -> list[int]:
        """Agent ids in the order they were added."""
        return list(self._queues)

    def drain(self) -> list[Any]:
        """Every queued item (per agent, oldest first), taken out without asking the source."""
        items = [item for queue in self._queues.values() for item, _, _ in queue]
        for queue in self._queues.values():
            queue.clear()
        self._total = 0
        return items

    def close(self) -> None:
        """Stop the source (a harness process, a serial port); raises SchedulerBackendError if it fails."""
        self.source.close()

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._queues

    def __len__(self) -> int:
        return self._total

    def _queue(self, agent_id: int, where: str) -> deque[tuple[Any, int, int]]:
        try:
            return self._queues[agent_id]
        except KeyError:
            raise KeyError(f"BackendQueue.{where}: unknown agent {agent_id} (call add_agent first)") from None

    def _guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.failed is not None:
            raise SchedulerBackendError(self.failed)
        try:
            return fn(*args)
        except ValueError:
            raise  # a documented refusal (no slot, cost too large): the caller answers it
        except Exception as exc:
            self.failed = f"scheduler backend {self.name!r} failed: {type(exc).__name__}: {exc}"
            raise SchedulerBackendError(self.failed) from exc
