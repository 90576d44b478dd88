"""`clove-gym hw` command group: analyze/sweep outputs and bad input as one clear line, exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from clove_gym.hw.cli import register
from clove_gym.sim.params import HwParams
from clove_gym.sim.synth import synth_trace


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="clove-gym")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("cli") / "t.clvtrace"
    synth_trace(path, agents=4, seconds=0.5, seed=5)
    return str(path)


def test_analyze_and_sweep(trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("hw", "analyze", trace, "--out", str(tmp_path)) == 0
    assert HwParams.load(tmp_path / "params.json").agents == 4
    assert "derived parameters" in capsys.readouterr().out
    assert run("hw", "sweep", trace, "--out", str(tmp_path), "--agents", "4", "--depths", "2,4") == 0
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 1 + 2 * 3
    assert (tmp_path / "sweep.png").exists()


def test_bad_input_exits_2(trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.clvtrace"
    cut.write_bytes(Path(trace).read_bytes()[:100])
    assert run("hw", "analyze", str(cut), "--out", str(tmp_path)) == 2
    assert "record 1 at byte offset 92" in capsys.readouterr().err
    assert run("hw", "sweep", trace, "--policies", "drr,pifo", "--out", str(tmp_path)) == 2
    assert "unknown ['pifo']" in capsys.readouterr().err


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("analyze", "sweep"):
        with pytest.raises(SystemExit) as e:
            run("hw", sub, "--help")
        assert e.value.code == 0
        assert "usage: clove-gym hw " + sub in capsys.readouterr().out


@pytest.mark.hw
def test_sim_and_program_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "p.json"
    HwParams(agents=8, depth=16, slots=32, mbox_depth=8).save(params)
    assert run("hw", "sim", "--params", str(params), "--cycles", "5000", "--out", str(tmp_path)) == 0
    assert "0 mismatches vs model" in capsys.readouterr().out
    assert (tmp_path / "sim.json").exists()
    assert run("hw", "program", "--board", "ulx3s-85f", "--bitstream", str(tmp_path / "none.bit")) == 2
    assert "no such bitstream" in capsys.readouterr().err
