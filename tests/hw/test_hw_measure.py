"""The C twin of the scheduling rule equals runtime/scheduler.py; the report's measurements run."""

from __future__ import annotations

import random

import pytest
from clove_gym.hw.measure import c_decisions_per_s, c_twin_run, harness_speed, software_decisions_per_s
from clove_gym.sim.backends import SoftwareBackend, Tick, first_divergence, run_backend
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import random_cycles


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


@pytest.mark.hw
def test_harness_speed_is_a_checked_replay() -> None:
    """The report's cycles/s come from replays the harness checked cycle for cycle against the model."""
    cycles = list(random_cycles(HwParams(), 5000, seed=2))
    h = harness_speed(HwParams(), cycles, repeat=4, runs=2)
    print(f"\nharness: {h['median'] / 1e6:.2f} M cycles/s (CPU time: {h['cpu']['median'] / 1e6:.2f})")
    assert h["n"] == h["cpu"]["n"] == 2 and h["min"] > 0 and h["cpu"]["min"] > 0
    assert h["checked_cycles_per_run"] == h["cycles_per_run"] == 4 * len(cycles)
