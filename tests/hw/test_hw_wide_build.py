"""The K-wide scheduler's build: refusals before synthesis, the report's figures, a real ECP5 build."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from clove_gym.hw.build import BOARDS
from clove_gym.hw.cli import register
from clove_gym.hw.report import markdown, wide_figures
from clove_gym.hw.wide_build import wide_build, wide_digest, wide_fit_check
from clove_gym.sim.params import HwParams, ParamsError
from clove_gym.sim.wide import WideParams

BOARD = HwParams(agents=8, depth=64, mbox_depth=4)  # reports/hw/params-board.json


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="clove-gym")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--board", "icebreaker", "--width", "8", "--agents", "16"], "exceed the budget"),
        (["--board", "ulx3s-85f", "--width", "17"], "width=17"),
        (
            ["--board", "ulx3s-85f", "--width", "12", "--structure", "prefix"],
            "structure 'prefix' with width=12",
        ),
        (["--board", "ulx3s-85f", "--width", "9", "--structure", "chain"], "structure 'chain' with width=9"),
        (["--board", "ulx3s-85f", "--width", "4", "--params", "{q}"], "quantum=2: must be 1"),
    ],
)
def test_cli_refuses_wide_builds_before_synthesis(
    argv: list[str], match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.json"
    q.write_text(json.dumps({"version": 1, "params": {"quantum": 2}}))
    argv = [a.replace("{q}", str(q)) for a in argv]
    assert run("hw", "build", *argv, "--out", str(tmp_path)) == 2
    assert match in capsys.readouterr().err
    assert not list(tmp_path.glob("build-*"))


def test_wide_fit_check_icebreaker() -> None:
    assert wide_fit_check(WideParams(BOARD, 4), BOARDS["icebreaker"]) < 0.6 * 5280  # built: 2596 LC (49%)
    for width in (8, 12, 16):
        with pytest.raises(ParamsError, match=f"width {width} x 8 agents"):
            wide_fit_check(WideParams(BOARD, width), BOARDS["icebreaker"])


def test_wide_figures_are_measured_rate_times_fmax(tmp_path: Path) -> None:
    """decisions/s = decisions per cycle of a backlogged replay of the wide RTL x the build's Fmax;
    builds of another wide RTL are not shown."""
    for name, digest, mhz in (("now", wide_digest(), 40.0), ("old", "0" * 16, 90.0)):
        (tmp_path / name).mkdir()
        report = {"board": "ulx3s-85f", "width": 4, "structure": "rank", "seed": 1, "rtl": digest,
                  "params": json.loads(BOARD.to_json())["params"], "constraint_mhz": 50.0,
                  "fmax": {"clk": {"mhz": mhz, "pass": False, "constraint_mhz": 50.0}},
                  "logic_used": 3000, "logic_percent": 3, "build_seconds": 1.0}  # fmt: skip
        (tmp_path / name / "report.json").write_text(json.dumps(report))
    w = wide_figures(best_c=40e6, python=0.5e6, build_root=tmp_path)
    (row,) = w["builds"]
    assert row["decisions_per_cycle"] == 4.0 and w["replays"][0]["min_per_cycle"] == 4
    assert row["decisions_per_s"] == pytest.approx(160e6) and row["vs_c"] == pytest.approx(4.0)
    md = markdown({"latency": {"enqueue_to_dispatch_cycles": 1, "send_to_recv_data_cycles": 3},
                   "decision_rate": None,
                   "software_decisions_per_s": {"python": {"median": 1, "min": 1, "max": 1, "n": 1}},
                   "verilator_harness_cycles_per_s": {"median": 1, "min": 1, "max": 1, "n": 1},
                   "rtl_decisions_per_s_at_fmax": None, "builds": [], "wide": w})  # fmt: skip
    assert "160.0 M decisions/s" in md and "4.0x" in md


@pytest.mark.slow
@pytest.mark.hw
def test_ulx3s_wide_k4_bitstream(tmp_path: Path) -> None:
    report = wide_build("ulx3s-85f", WideParams(BOARD, 4), seed=1, target_mhz=60.0)
    assert Path(report["bitstream"]).stat().st_size > 100_000
    assert report["width"] == 4 and report["rtl"] == wide_digest()
    (fmax,) = report["fmax"].values()
    print(
        f"\nulx3s-85f K=4: {report['logic_used']} LUT4, Fmax {fmax['mhz']} MHz at {fmax['constraint_mhz']} MHz"
    )
    assert report["logic_used"] > 1000  # the scheduler is there: nothing was optimised away
    assert fmax["mhz"] > 25  # runs at the board's 25 MHz oscillator
