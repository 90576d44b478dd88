"""The K-wide scheduler's generated Verilog on Verilator (cocotb) equals the wide golden model."""

from __future__ import annotations

import pytest
from clove_gym.hw.cocotb_run import run_cocotb_wide
from clove_gym.sim.params import HwParams
from clove_gym.sim.wide import WideParams
from clove_gym.sim.wide_stimulus import WIDE_PROFILES

pytestmark = pytest.mark.hw


@pytest.mark.timeout(1200)  # K=8/16 compile one large C++ file: >300 s on a loaded 2-core VM
@pytest.mark.parametrize("width", [4, 8, 16])  # 16: above the 8 agents, the widest built (SPEC §8)
def test_cocotb_wide_scoreboard(width: int) -> None:
    p = WideParams(HwParams(agents=8, depth=64), width)
    segments = [{"profile": prof, "seed": i, "cycles": 600} for i, prof in enumerate(WIDE_PROFILES)]
    result = run_cocotb_wide(p, "rank", segments, resets=[250, 251, 1900])
    print(
        f"\ncocotb wide K={width}: {result['cycles']} cycles, {result['decisions']} decisions,"
        f" {result['cycles_per_s']:.0f} cycles/s"
    )
    assert result["cocotb_failed"] == 0 and result["mismatches"] == 0
    assert result["cycles"] == 600 * len(WIDE_PROFILES)
    assert result["decisions"] > 2 * result["cycles"]  # several decisions per cycle on average
