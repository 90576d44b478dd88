"""`hw report`: the issue-4 figures are measured on the Verilated RTL and written as JSON + Markdown."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from clove_gym.hw.cli import register
from clove_gym.sim.synth import synth_trace

pytestmark = pytest.mark.hw


def test_report_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "t.clvtrace"
    synth_trace(trace, agents=8, seconds=0.5, seed=9)
    parser = argparse.ArgumentParser(prog="clove-gym")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(["hw", "report", "--trace", str(trace), "--out", str(tmp_path)])
    assert args.func(args) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["latency"]["enqueue_to_dispatch_cycles"] <= 3
    assert r["latency"]["send_to_recv_data_cycles"] <= 3
    assert r["decision_rate"]["decisions_per_busy_cycle"] >= 0.95
    assert r["verilator_harness_cycles_per_s"]["median"] > 0
    assert r["software_decisions_per_s"]["c"]["median"] > r["software_decisions_per_s"]["python"]["median"]
    md = (tmp_path / "report.md").read_text()
    assert "enqueue-to-dispatch" in md and "Verilator direct harness" in md
    print("\n" + capsys.readouterr().out)
