"""The C twin of the scheduling rule equals runtime/scheduler.py; the report's measurements run."""

from __future__ import annotations

import random

import pytest
from clove_gym.hw.measure import c_decisions_per_s, c_twin_run, software_decisions_per_s
from clove_gym.sim.backends import SoftwareBackend, Tick, first_divergence, run_backend
from clove_gym.sim.params import HwParams


@pytest.mark.parametrize("seed", range(6))
def test_c_twin_equals_software(seed: int) -> None:
    r = random.Random(seed)
    q = r.randint(1, 3)
    mc = r.randint(1, q)
    p = HwParams(
        agents=r.choice([2, 4, 8, 32]),
        depth=r.choice([1, 4, 16]),
        quantum=q,
        max_cost=mc,
        bucket_rate=r.choice([0, 40, 300]),
        bucket_burst=r.randint(mc, 5),
    )
    ticks = [
        Tick((r.randrange(p.agents), r.randint(1, mc)) if r.random() < 0.8 else None, r.random() < 0.7)
        for _ in range(3000)
    ]
    got, want = c_twin_run(p, ticks), run_backend(SoftwareBackend(p), ticks)
    assert first_divergence(got, want) is None
    assert sum(x.grant is not None for x in got) > 500


def test_decision_rates_are_measured() -> None:
    py = software_decisions_per_s(8, decisions=20_000, runs=2)
    c = c_decisions_per_s(8, decisions=2_000_000, runs=2)
    print(
        f"\nsoftware scheduler, 8 agents backlogged: Python {py['median']:.0f}/s, C twin {c['median']:.0f}/s"
    )
    assert py["n"] == 2 and c["min"] > 0 and py["min"] > 0
