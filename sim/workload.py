"""From `.clvtrace` records to cycle stimulus for the model, the RTL and the on-chip replayer (SPEC.md §6)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.reader import Record, TraceFile, TraceFormatError, read_trace

from .model import Core, CycleIn
from .params import HwParams

IDLE = CycleIn(disp_ready=True)


class WorkloadError(ValueError):
    """A trace that cannot be turned into stimulus; names the file and record."""


def load_trace(path: str | os.PathLike[str]) -> TraceFile:
    """Read a trace strictly: a malformed or truncated record is an error naming it, never skipped."""
    try:
        trace = read_trace(path, strict=True)
    except TraceFormatError as e:
        raise WorkloadError(str(e)) from None
    except OSError as e:
        raise WorkloadError(f"{os.fspath(path)}: cannot read trace ({e.strerror})") from None
    if not trace.records:
        raise WorkloadError(f"{os.fspath(path)}: the trace holds no records")
    return trace


@dataclass(frozen=True)
class Event:
    """One stimulus item at the cycle it is offered (exactly one port set)."""

    cycle: int
    enq: tuple[int, int] | None = None
    send: tuple[int, int, int, bool] | None = None
    recv: int | None = None


def to_events(
    records: Iterable[Record], agents: int, ns_per_cycle: float = 1000.0, max_gap: int = 64
) -> list[Event]:
    """Map trace records to per-port events; see SPEC.md §6 for the rules."""
    if ns_per_cycle <= 0 or max_gap < 1:
        raise WorkloadError(f"ns_per_cycle={ns_per_cycle}, max_gap={max_gap}: both must be positive")
    items: list[tuple[int, int, str, tuple]] = []  # (t_ns, index, port, value)
    seen_bcast: set[tuple[int, int]] = set()
    for r in records:
        slot = r.agent_id % agents
        if r.kind == Kind.SYSCALL and r.opcode == Op.THINK:
            items.append((r.t_ns, r.index, "enq", (slot, 1)))
        elif r.kind == Kind.MSG_ENQUEUE:
            bcast = r.opcode == Op.BROADCAST
            if bcast:
                if (r.agent_id, r.t_ns) in seen_bcast:
                    continue  # one broadcast is recorded once per receiver; the fabric sends it once
                seen_bcast.add((r.agent_id, r.t_ns))
            items.append((r.t_ns, r.index, "send", (slot, r.peer_id % agents, r.aux & 0xFFFF, bcast)))
        elif r.kind == Kind.MSG_DEQUEUE:
            items.append((r.t_ns, r.index, "recv", slot))
    items.sort(key=lambda x: (x[0], x[1]))
    events: list[Event] = []
    next_free = {"enq": 0, "send": 0, "recv": 0}
    cycle, last_t = 0, None
    for t_ns, _, port, value in items:
        if last_t is not None:
            cycle += min(max_gap, int((t_ns - last_t) / ns_per_cycle))
        last_t = t_ns
        c = max(cycle, next_free[port])
        next_free[port] = c + 1
        events.append(Event(c, **{port: value}))
    events.sort(key=lambda e: e.cycle)
    return events


def cycles_of(events: Sequence[Event], drain: int = 0) -> Iterator[CycleIn]:
    """Per-cycle inputs for the events (ports merged per cycle), then `drain` idle cycles."""
    i, n = 0, len(events)
    end = (events[-1].cycle + 1 if events else 0) + drain
    for c in range(end):
        if i < n and events[i].cycle == c:
            enq = send = recv = None
            while i < n and events[i].cycle == c:
                e = events[i]
                enq, send = e.enq or enq, e.send or send
                recv = e.recv if e.recv is not None else recv
                i += 1
            yield CycleIn(enq=enq, send=send, recv=recv)
        else:
            yield IDLE


def replay(
    params: HwParams,
    events: Sequence[Event],
    policy: str = "drr",
    capacity: float = 1.0,
    drain: int | None = None,
) -> Core:
    """Run the golden model over the events, plus idle cycles to drain the queues. `capacity` is the
    fraction of cycles the consumer takes a dispatch (evenly spread), to model a slower consumer."""
    if not 0 < capacity <= 1:
        raise ValueError(f"capacity={capacity}: must be in (0, 1]")
    core = Core(params, policy)
    if drain is None:
        drain = int(params.agents * params.depth / capacity) + 1
    for c, inp in enumerate(cycles_of(events, drain)):
        ready = capacity == 1 or int((c + 1) * capacity) > int(c * capacity)
        core.step(inp if ready else replace(inp, disp_ready=False))
    return core


def load_events(paths: Sequence[str], params: HwParams, ns_per_cycle: float, max_gap: int) -> list[Event]:
    """Events of several traces played one after the other."""
    out: list[Event] = []
    for path in paths:
        base = out[-1].cycle + max_gap if out else 0
        evs = to_events(load_trace(path).records, params.agents, ns_per_cycle, max_gap)
        out.extend(Event(e.cycle + base, e.enq, e.send, e.recv) for e in evs)
    return out
