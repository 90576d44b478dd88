"""The kernel's event bus: per-agent subscriptions and bounded event queues (spec §2.8)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

EVENT_TYPES = (
    "AGENT_SPAWNED",
    "AGENT_EXITED",
    "AGENT_PAUSED",
    "AGENT_RESUMED",
    "AGENT_RESTARTING",
    "AGENT_ESCALATED",
    "MESSAGE_RECEIVED",
    "STATE_CHANGED",
    "SYSCALL_BLOCKED",
    "RESOURCE_WARNING",
    "CUSTOM",
)
DEFAULT_QUEUE_LIMIT = 10_000


def normalise_type(name: str) -> str:
    """Unknown event names are CUSTOM (spec §2.8)."""
    return name if name in EVENT_TYPES else "CUSTOM"


class EventBus:
    """Subscriptions are a set of types per agent; an event is queued for every agent subscribed at emit
    time. Queues are bounded: when one is full the oldest event is dropped and counted."""

    def __init__(self, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self.queue_limit = queue_limit
        self._subs: dict[int, set[str]] = {}
        self._queues: dict[int, deque[dict[str, Any]]] = {}
        self.dropped: dict[int, int] = {}
        self._t0 = time.monotonic_ns()

    def subscribe(self, agent_id: int, types: list[str]) -> None:
        self._subs.setdefault(agent_id, set()).update(normalise_type(t) for t in types)

    def unsubscribe(self, agent_id: int, types: list[str] | None) -> list[str]:
        """Drop the given types, or every subscription when `types` is None; returns the types dropped.
        Queued events stay."""
        subs = self._subs.get(agent_id)
        if subs is None:
            return []
        dropped = set(subs) if types is None else subs & {normalise_type(t) for t in types}
        subs.difference_update(dropped)
        return sorted(dropped)

    def has_subscribers(self, event_type: str) -> bool:
        return any(event_type in s for s in self._subs.values())

    def subscribers(self, event_type: str) -> list[int]:
        return [aid for aid, s in self._subs.items() if event_type in s]

    def emit(self, event_type: str, data: Any, source_agent_id: int = 0) -> dict[str, Any]:
        """Queue the event for its subscribers; returns the event object."""
        event = {
            "type": event_type,
            "data": data,
            "source_agent_id": source_agent_id,
            "timestamp": (time.monotonic_ns() - self._t0) // 1_000_000,
        }
        for aid in self.subscribers(event_type):
            queue = self._queues.setdefault(aid, deque())
            if len(queue) >= self.queue_limit:
                queue.popleft()
                self.dropped[aid] = self.dropped.get(aid, 0) + 1
            queue.append(event)
        return event

    def poll(self, agent_id: int, limit: int) -> list[dict[str, Any]]:
        queue = self._queues.get(agent_id)
        out: list[dict[str, Any]] = []
        while queue and len(out) < limit:
            out.append(queue.popleft())
        return out

    def forget(self, agent_id: int) -> None:
        """A connection went away: its subscriptions and queue go too (C6)."""
        self._subs.pop(agent_id, None)
        self._queues.pop(agent_id, None)
        self.dropped.pop(agent_id, None)
