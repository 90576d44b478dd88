"""cocotb testbench for the generated `core` Verilog: scoreboard against the golden model, cycle by cycle.

Run through hw/cocotb_run.py (cocotb 2.x runner on Verilator). The plan comes in the environment
variable CLOVE_COCOTB_PLAN (JSON: params, segments, resets, out); the results (mismatches, coverage,
cycles/s) go to the `out` JSON file, and any mismatch fails the cocotb test with the cycle and values.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from clove_gym.hw.ports import INPUTS, pack, unpack
from clove_gym.hw.scoreboard import finish
from clove_gym.sim import model
from clove_gym.sim.coverage import Coverage
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import random_cycles
from clove_gym.sim.workload import cycles_of, load_events
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer


def segments(params: HwParams, plan: dict):
    """(segment name, cycle inputs) in plan order."""
    for seg in plan["segments"]:
        if seg["kind"] == "random":
            yield (
                f"random:{seg['profile']}",
                random_cycles(params, seg["cycles"], seg["seed"], seg["profile"]),
            )
        else:
            events = load_events(
                [seg["path"]], params, seg.get("ns_per_cycle", 1000.0), seg.get("max_gap", 64)
            )
            yield f"trace:{Path(seg['path']).name}", cycles_of(events, params.agents * params.depth)


@cocotb.test()
async def scoreboard(dut) -> None:
    plan = json.loads(os.environ["CLOVE_COCOTB_PLAN"])
    params = HwParams.from_json(json.dumps({"version": 1, "params": plan["params"]}), "CLOVE_COCOTB_PLAN")
    resets = set(plan.get("resets", ()))
    ports = {name: getattr(dut, name) for name in INPUTS}
    Clock(dut.clk, 10, unit="ns").start(start_high=False)
    dut.rst.value = 1
    for name in INPUTS:
        ports[name].value = 0
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    ref, cov = model.Core(params), Coverage(params.agents)
    t, mismatches, first = 0, 0, None
    per_segment = {}
    t0 = time.perf_counter()
    for name, cycles in segments(params, plan):
        start = t
        for inp in cycles:
            for port, value in pack(params, inp).items():
                ports[port].value = value
            dut.rst.value = int(t in resets)
            await Timer(1, unit="ns")  # let the combinational outputs settle
            got = unpack(params, inp, lambda n: int(getattr(dut, n).value))
            want = cov.step(ref, inp, reset=t in resets)
            if got != want:
                mismatches += 1
                first = first or {
                    "cycle": t,
                    "segment": name,
                    "input": repr(inp),
                    "rtl": repr(got),
                    "model": repr(want),
                }
            await FallingEdge(dut.clk)
            t += 1
        per_segment[name] = t - start
    s = ref.stats
    finish(
        plan,
        t,
        t0,
        mismatches,
        first,
        "the golden model",
        segments=per_segment,
        decisions=s.decisions,
        max_latency=max(s.latencies, default=0),
        coverage=cov.report(),
    )
