"""Constrained-random cycle stimulus for the model-vs-RTL scoreboards (amaranth.sim and cocotb).

Profiles aim at the corner cases of the SPEC: `random` (everything at moderate load), `full` (queues
and mailboxes pushed to full while the consumer stalls), `broadcast` (broadcasts against nearly full
mailboxes), `quota` (slow buckets: throttling and kept deficits), `starve` (one agent floods, the
others must still be served: checked by the caller from the grants).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .model import CycleIn
from .params import HwParams

PROFILES = ("random", "full", "broadcast", "quota", "starve")


def random_cycles(params: HwParams, cycles: int, seed: int, profile: str = "random") -> Iterator[CycleIn]:
    """`cycles` inputs drawn for `profile` (deterministic in `seed`)."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: expected one of {PROFILES}")
    r = random.Random(seed)
    n = params.agents
    p_enq, p_ready, p_send, p_bcast, p_recv = {
        "random": (0.6, 0.8, 0.4, 0.15, 0.4),
        "full": (0.95, 0.2, 0.8, 0.1, 0.1),
        "broadcast": (0.3, 0.7, 0.7, 0.8, 0.25),
        "quota": (0.8, 0.9, 0.2, 0.1, 0.3),
        "starve": (0.9, 0.5, 0.2, 0.1, 0.3),
    }[profile]
    mask = (1 << params.payload_bits) - 1
    for _ in range(cycles):
        agent = 0 if profile == "starve" and r.random() < 0.8 else r.randrange(n)
        enq = (agent, r.randint(1, params.max_cost)) if r.random() < p_enq else None
        send = None
        if r.random() < p_send:
            send = (r.randrange(n), r.randrange(n), r.getrandbits(32) & mask, r.random() < p_bcast)
        recv = r.randrange(n) if r.random() < p_recv else None
        yield CycleIn(enq=enq, disp_ready=r.random() < p_ready, send=send, recv=recv)
