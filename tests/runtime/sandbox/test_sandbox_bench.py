"""The latency bench's measuring parts, on real spawns (figures themselves are printed, not asserted)."""

from __future__ import annotations

import sys

from clove_gym.runtime.sandbox import bench


def test_summary_percentiles() -> None:
    s = bench.summary([float(x) for x in range(1, 101)])
    assert (s["n"], s["p50"], s["p99"], s["min"], s["max"]) == (100, 50.5, 99.0, 1.0, 100.0)


def test_first_instruction_latency_of_sandboxed_and_plain_agents(runner) -> None:
    script = runner.script(bench._FIRST)
    ms, warm = bench._spawns(runner.launcher, script, 3, 0.05)
    assert len(ms) == 3 and all(0 < m < 5000 for m in ms) and 0 <= warm <= 3
    plain = bench._popen([sys.executable, "-S", script], 2)
    assert all(0 < m < 5000 for m in plain)
