"""cocotb testbench for the generated `wide` Verilog: the K-wide scheduler against sim/wide.py, every cycle.

Run through hw/cocotb_run.py `run_cocotb_wide` (cocotb 2.x runner on Verilator). The plan comes in
CLOVE_COCOTB_PLAN (JSON: params, width, segments, resets, out); results go to the `out` JSON file and
any mismatch fails the cocotb test with the cycle and both values.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from clove_gym.hw.scoreboard import finish
from clove_gym.sim.params import HwParams
from clove_gym.sim.wide import WideOut, WideParams, WideScheduler
from clove_gym.sim.wide_stimulus import wide_cycles
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer


@cocotb.test()
async def wide_scoreboard(dut) -> None:
    plan = json.loads(os.environ["CLOVE_COCOTB_PLAN"])
    base = HwParams.from_json(json.dumps({"version": 1, "params": plan["params"]}), "CLOVE_COCOTB_PLAN")
    p = WideParams(base, plan["width"]).validate()
    k, ab = p.width, base.agent_bits
    resets = set(plan.get("resets", ()))
    valid_in = [getattr(dut, f"enq__{x}__valid") for x in range(k)]
    agent_in = [getattr(dut, f"enq__{x}__payload") for x in range(k)]
    ready_out = [getattr(dut, f"enq__{x}__ready") for x in range(k)]
    Clock(dut.clk, 10, unit="ns").start(start_high=False)
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    ref = WideScheduler(p)
    t, mismatches, first, lanes = 0, 0, None, 0
    t0 = time.perf_counter()
    for seg in plan["segments"]:
        for inp in wide_cycles(p, seg["cycles"], seg["seed"], seg["profile"]):
            for x in range(k):
                valid_in[x].value = int(inp.enq[x] is not None)
                agent_in[x].value = inp.enq[x] or 0
            dut.take.value = inp.take
            dut.rst.value = int(t in resets)
            await Timer(1, unit="ns")  # let the combinational outputs settle
            valid, grant = int(dut.valid.value), int(dut.grant.value)
            got = WideOut(
                tuple(grant >> (x * ab) & ((1 << ab) - 1) for x in range(k) if valid >> x & 1),
                tuple(inp.enq[x] is not None and bool(int(ready_out[x].value)) for x in range(k)),
            )
            want = ref.step(inp)
            if t in resets:
                ref.reset()
            thermometer = valid & (valid + 1) == 0
            if got != want or not thermometer:
                mismatches += 1
                first = first or {"cycle": t, "input": repr(inp), "rtl": repr(got), "model": repr(want)}
            lanes += len(want.grants)
            await FallingEdge(dut.clk)
            t += 1
    finish(
        plan,
        t,
        t0,
        mismatches,
        first,
        "the wide golden model",
        lanes_shown=lanes,
        decisions=ref.stats.decisions,
    )
