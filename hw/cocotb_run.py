"""Run hw/cocotb_core.py on Verilator through the cocotb 2.x Python runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from clove_gym.sim.params import HwParams
from clove_gym.sim.wide import WideParams

from .toolchain import ToolchainError, verilog
from .verilate import BUILD, cached_verilog, core_verilog, verilator_env


def run_cocotb(params: HwParams, segments: list[dict], resets: list[int] = (), build: Path = BUILD) -> dict:
    """Build (cached) and run the scoreboard; returns its result dict (mismatches, coverage, cycles/s)."""
    segments = [dict(s, path=str(Path(s["path"]).resolve())) if "path" in s else s for s in segments]
    src = core_verilog(params, build)
    plan = {"params": json.loads(params.to_json())["params"], "segments": segments, "resets": list(resets)}
    return _run(src, "core", "clove_gym.hw.cocotb_core", plan)


def wide_verilog(params: WideParams, structure: str, build: Path = BUILD) -> Path:
    """wide.v for these parameters (top module `wide`, ports named as the component's members)."""
    from .wide_scheduler import WideScheduler

    return cached_verilog(verilog(WideScheduler(params, structure), "wide"), "wide", build)


def run_cocotb_wide(
    params: WideParams, structure: str, segments: list[dict], resets: list[int] = (), build: Path = BUILD
) -> dict:
    """The K-wide scheduler's generated Verilog on Verilator against sim/wide.py (hw/cocotb_wide.py).
    `segments`: {"profile", "seed", "cycles"} of sim/wide_stimulus.py."""
    src = wide_verilog(params, structure, build)
    plan = {
        "params": json.loads(params.base.to_json())["params"],
        "width": params.width,
        "segments": segments,
        "resets": list(resets),
    }
    # one C++ file: split ones are compiled with the wheel's precompiled-header rule, which fails here
    # (`Vtop__pch.h.fast: linker input file not found`); -O0 since one -Os file of the K=8 design
    # takes minutes to compile and the scoreboard runs a few thousand cycles
    return _run(src, "wide", "clove_gym.hw.cocotb_wide", plan, ["--output-split", "0", "-CFLAGS", "-O0"])


def _run(src: Path, top: str, test_module: str, plan: dict, extra_args: list[str] = ()) -> dict:
    """Build `src` with Verilator (cached in its folder) and run `test_module` on it with `plan`."""
    try:
        from cocotb_tools.check_results import get_results
        from cocotb_tools.runner import get_runner
    except ImportError:
        raise ToolchainError(
            "cocotb not found (install the PyPI package cocotb>=2: pip install 'cocotb>=2')"
        ) from None
    # the simulator runs in the build directory: trace paths must not be relative to the caller's cwd
    sim_dir = src.parent / "cocotb"
    out = sim_dir / f"result-{os.getpid()}.json"
    env = verilator_env()
    saved = {k: os.environ.get(k) for k in ("PATH", "VERILATOR_ROOT")}
    os.environ.update(PATH=env["PATH"], VERILATOR_ROOT=env["VERILATOR_ROOT"])
    try:
        runner = get_runner("verilator")
        runner.build(
            sources=[src], hdl_toplevel=top, build_dir=sim_dir, build_args=["-Wno-fatal", "-O2", *extra_args]
        )
        plan = dict(plan, out=str(out))
        xml = runner.test(
            test_module=test_module,
            hdl_toplevel=top,
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
