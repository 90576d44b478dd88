"""`clove-gym bench runtime --quick`: every figure, next to its same-run baseline, with the placement."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from clove_gym.benchmarks import bench_cli, runtime_bench
from clove_gym.benchmarks.cli import main

FIGURES = {
    "NOOP RTT p50",
    "NOOP RTT p99",
    "tracing: NOOP p50 cost",
    "SEND->RECV 1:1",
    "BROADCAST x100",
    "64 clients: calls/s",
    "64 clients: p99",
    "64 clients: max/min",
}


def test_quick_run_reports_every_figure_with_its_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "runtime", "--quick", "--json", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((tmp_path / "runtime-latest.json").read_text())
    assert printed["figures"] == on_disk["figures"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert on_disk["schema"] == runtime_bench.SCHEMA and on_disk["quick"] is True
    place = on_disk["placement"]
    assert place["mode"] == "same" and place["kernel_cpu"] == place["client_cpu"]
    assert "pinned to CPU" in place["description"]
    planes = [p for p, info in on_disk["planes"].items() if info["available"]]
    assert "python" in planes
    assert on_disk["planes"]["python"]["kernel_native"] is False
    for plane in planes:
        figs = {f["name"]: f for f in on_disk["figures"] if f["plane"] == plane}
        assert set(figs) == FIGURES
        for f in figs.values():
            assert f["baseline"] is not None and f["baseline_name"] in runtime_bench.BASELINES
            assert len(f["value"]["samples"]) == on_disk["params"]["reps"]
            assert f["value"]["min"] <= f["value"]["median"] <= f["value"]["max"]
            assert f["baseline"]["median"] > 0
        assert figs["NOOP RTT p50"]["value"]["median"] > 0
        assert figs["SEND->RECV 1:1"]["value"]["median"] > 0
        assert figs["64 clients: max/min"]["value"]["min"] >= 1.0


def test_table_renders_every_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = runtime_bench.Report(runtime_bench.placement("same"), runtime_bench.Params.for_run(True), True)
    spread = runtime_bench.Spread.of([10.0, 12.0, 11.0])
    report.figures.append(
        runtime_bench.Figure(
            "NOOP RTT p50", "python", "us", spread, "C ping-pong", spread, "<= 2x base", True, 1.0
        )
    )
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(runtime_bench.render(report))
    text = console.export_text()
    assert "NOOP RTT p50" in text and "11.0 (10.0..12.0) us" in text and "pass" in text
    path = runtime_bench.write_json(report, tmp_path / "out")
    assert json.loads(path.read_text())["figures"][0]["value"]["median"] == 11.0


def test_placement_modes() -> None:
    same = runtime_bench.placement("same")
    assert same.kernel_cpu == same.client_cpu
    if len(os.sched_getaffinity(0)) >= 2:
        split = runtime_bench.placement("split")
        assert split.kernel_cpu != split.client_cpu
    with pytest.raises(ValueError, match="'same' or 'split'"):
        runtime_bench.placement("everywhere")


def test_bench_group_takes_sibling_subcommands() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    seen: list[str] = []
    bench_cli.BENCHES.append(
        bench_cli.Bench("dummy", "a sibling", lambda p: None, lambda a: seen.append(a.out) or 0)
    )
    try:
        bench_cli.register(sub)
        args = parser.parse_args(["bench", "dummy", "--quick", "--out", "x"])
        assert args.func(args) == 0 and seen == ["x"]
        args = parser.parse_args(["bench", "runtime", "--cpus", "split", "--plane", "python"])
        assert (args.cpus, args.plane, args.quick, args.out) == (
            "split",
            "python",
            False,
            bench_cli.DEFAULT_OUT,
        )
    finally:
        bench_cli.BENCHES.pop()
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "runtime", "--cpus", "everywhere"])
