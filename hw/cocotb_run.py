"""Run hw/cocotb_core.py on Verilator through the cocotb 2.x Python runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clove_gym.sim.params import HwParams

from .toolchain import ToolchainError
from .verilate import BUILD, core_verilog, verilator_env


def run_cocotb(params: HwParams, segments: list[dict], resets: list[int] = (), build: Path = BUILD) -> dict:
    """Build (cached) and run the scoreboard; returns its result dict (mismatches, coverage, cycles/s)."""
    try:
        from cocotb_tools.check_results import get_results
        from cocotb_tools.runner import get_runner
    except ImportError:
        raise ToolchainError(
            "cocotb not found (install the PyPI package cocotb>=2: pip install 'cocotb>=2')"
        ) from None
    # the simulator runs in the build directory: trace paths must not be relative to the caller's cwd
    segments = [dict(s, path=str(Path(s["path"]).resolve())) if "path" in s else s for s in segments]
    src = core_verilog(params, build)
    sim_dir = src.parent / "cocotb"
    out = sim_dir / f"result-{os.getpid()}.json"
    env = verilator_env()
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT")}
    os.environ.update(PATH=env["PATH"], VERILATOR_ROOT=env["VERILATOR_ROOT"])
    try:
        runner = get_runner("verilator")
        runner.build(sources=[src], hdl_toplevel="core", build_dir=sim_dir, build_args=["-Wno-fatal", "-O2"])
        plan = {
            "params": json.loads(params.to_json())["params"],
            "segments": segments,
            "resets": list(resets),
            "out": str(out),
        }
        xml = runner.test(
            test_module="clove_gym.hw.cocotb_core",
            hdl_toplevel="core",
            build_dir=sim_dir,
            test_dir=sim_dir,
            extra_env={"CLOVE_COCOTB_PLAN": json.dumps(plan)},
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    tests, failed = get_results(Path(xml))
    if not out.exists():
        raise ToolchainError(f"cocotb run wrote no result ({tests} tests, {failed} failed); see {sim_dir}")
    result = json.loads(out.read_text())
    out.unlink()
    result["cocotb_tests"], result["cocotb_failed"] = tests, failed
    return result
