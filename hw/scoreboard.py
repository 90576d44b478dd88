"""The end of a cocotb scoreboard run (hw/cocotb_core.py, hw/cocotb_wide.py): its result file and verdict."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def finish(plan: dict, cycles: int, t0: float, mismatches: int, first: Any, model: str, **extra: Any) -> None:
    """Write the run's figures to plan["out"] (read by hw/cocotb_run.py), then fail the cocotb test if
    any cycle differed from `model`, naming the first one."""
    seconds = time.perf_counter() - t0
    result = {
        "cycles": cycles,
        "seconds": seconds,
        "cycles_per_s": cycles / seconds,
        "mismatches": mismatches,
        "first_mismatch": first,
        **extra,
    }
    Path(plan["out"]).write_text(json.dumps(result, indent=2))
    assert mismatches == 0, f"{mismatches} cycles differ from {model}; first: {first}"
