"""Constrained-random stimulus for the K-wide scheduler's scoreboards (SPEC.md §8).

Profiles aim at its corner cases: `random` (moderate load, any take), `sparse` (queues mostly empty,
agents emptying mid-cycle), `full` (queues pushed to depth while the consumer takes little),
`single` (one backlogged agent: K grants to it in one cycle), `backlogged` (K enqueues per cycle in
ring order and the consumer takes K: the sustained-rate case).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .wide import WideIn, WideParams

WIDE_PROFILES = ("random", "sparse", "full", "single", "backlogged")


def wide_cycles(params: WideParams, cycles: int, seed: int, profile: str = "random") -> Iterator[WideIn]:
    """`cycles` inputs drawn for `profile` (deterministic in `seed`)."""
    if profile not in WIDE_PROFILES:
        raise ValueError(f"profile {profile!r}: expected one of {WIDE_PROFILES}")
    r = random.Random(seed)
    n, k = params.agents, params.width
    cursor = 0
    for _ in range(cycles):
        if profile == "backlogged":
            yield WideIn(tuple((cursor + x) % n for x in range(k)), k)
            cursor = (cursor + k) % n
            continue
        p_enq, take_hi = {"random": (0.5, k), "sparse": (0.12, k), "full": (0.9, 1), "single": (0.9, k)}[
            profile
        ]
        enq = []
        for _ in range(k):
            if r.random() >= p_enq:
                enq.append(None)
            elif profile == "single":
                enq.append(0 if r.random() < 0.9 else r.randrange(n))
            else:
                enq.append(r.randrange(n))
        take = k if profile == "single" and r.random() < 0.7 else r.randint(0, take_hi)
        yield WideIn(tuple(enq), take)
