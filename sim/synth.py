"""Synthetic but realistic runtime traces (until the kernel's recorded ones are plentiful).

Each agent alternates bursts of THINK calls with quiet periods (on/off source), talks to random peers
(SEND -> MSG_ENQUEUE, later RECV -> MSG_DEQUEUE) and sometimes broadcasts (one MSG_ENQUEUE per
receiver, as the kernel records it), among filler syscalls. THINK calls wait in a `workers`-slot
queue served in arrival order, which is what gives `queue_ns` its burst-shaped tail.
"""

from __future__ import annotations

import heapq
import os
import random

from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.writer import TraceWriter

FILLER = (Op.READ, Op.WRITE, Op.STORE, Op.FETCH, Op.NOOP)


def synth_trace(
    path: str | os.PathLike[str],
    agents: int = 8,
    seconds: float = 2.0,
    think_rate: float = 8.0,
    burst: float = 6.0,
    workers: int = 4,
    msg_rate: float = 20.0,
    broadcast_frac: float = 0.1,
    seed: int = 0,
) -> int:
    """Write a trace; returns the number of records. Rates are per agent per second while active."""
    rng = random.Random(seed)
    t0 = 1_000_000_000
    horizon = int(seconds * 1e9)
    recs: list[tuple[int, dict]] = []
    thinks: list[tuple[int, int]] = []
    for a in range(1, agents + 1):
        t = rng.randrange(0, horizon // 10)
        while t < horizon:
            for _ in range(max(1, int(rng.expovariate(1 / burst)))):  # a burst of THINK calls
                thinks.append((t, a))
                t += int(rng.expovariate(think_rate) * 1e9 / 4)
            t += int(rng.expovariate(think_rate / burst) * 1e9)  # quiet period
        t = rng.randrange(0, horizon // 10)
        while t < horizon:
            size = int(rng.lognormvariate(5.0, 1.0)) + 2
            if rng.random() < broadcast_frac:
                for b in range(1, agents + 1):
                    if b != a:
                        recs.append(
                            (
                                t,
                                dict(
                                    kind=Kind.MSG_ENQUEUE,
                                    opcode=Op.BROADCAST,
                                    agent_id=a,
                                    peer_id=b,
                                    req=b"x" * size,
                                ),
                            )
                        )
                        recs.append(
                            (
                                t + int(rng.expovariate(1 / 2e5)),
                                dict(
                                    kind=Kind.MSG_DEQUEUE,
                                    opcode=Op.RECV,
                                    agent_id=b,
                                    peer_id=a,
                                    req=b"x" * size,
                                ),
                            )
                        )
            else:
                b = rng.choice([x for x in range(1, agents + 1) if x != a])
                recs.append(
                    (t, dict(kind=Kind.MSG_ENQUEUE, opcode=Op.SEND, agent_id=a, peer_id=b, req=b"x" * size))
                )
                recs.append(
                    (
                        t + int(rng.expovariate(1 / 2e5)),
                        dict(kind=Kind.MSG_DEQUEUE, opcode=Op.RECV, agent_id=b, peer_id=a, req=b"x" * size),
                    )
                )
            recs.append(
                (
                    t + 1000,
                    dict(
                        kind=Kind.SYSCALL,
                        opcode=rng.choice(FILLER),
                        agent_id=a,
                        service_ns=rng.randrange(2000, 40000),
                    ),
                )
            )
            t += int(rng.expovariate(msg_rate) * 1e9)
    free: list[int] = [0] * workers  # when each THINK worker is next free
    for t, a in sorted(thinks):
        start = max(t, heapq.heappop(free))
        service = int(rng.lognormvariate(18.0, 0.6))  # ~65 ms median LLM call
        heapq.heappush(free, start + service)
        recs.append(
            (
                t,
                dict(
                    kind=Kind.SYSCALL,
                    opcode=Op.THINK,
                    agent_id=a,
                    queue_ns=start - t,
                    service_ns=service,
                    req=b"p" * rng.randrange(50, 2000),
                ),
            )
        )
    recs.sort(key=lambda x: x[0])
    seq = 0
    with TraceWriter(path, cap=0, wall_ns=t0, mono_ns=t0) as w:
        for t, fields in recs:
            seq += 1
            w.record(t_ns=t0 + t, aux=seq, **fields)
    return len(recs)
