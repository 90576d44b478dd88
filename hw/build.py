"""Bitstream builds with the YoWASP tools: fit check first, then Amaranth's platform flow, then the report.

`fit_check` refuses parameters a board cannot hold before any synthesis runs (a minute saved and a
reason given); `build` runs Yosys + nextpnr + pack and parses nextpnr's log for resource use and the
Fmax of each clock. Builds live under hw/build/<board>-<hash>/.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth import Elaboratable, Module
from amaranth.build import Clock
from amaranth.lib import io
from clove_gym.sim.params import HwParams, ParamsError

from .replayer import rom_entries
from .toolchain import ToolchainError, export_tools
from .top import SystemTop
from .verilate import BUILD


@dataclass(frozen=True)
class Board:
    name: str
    device: str
    logic: int  # LUT4 logic cells
    logic_kind: str  # nextpnr's name for them
    bram_bits: int
    max_agents: int
    logic_budget: float  # share of the logic a build may use (issue 4: <= 60% on the iCE40)
    tools: tuple[str, ...]
    target_mhz: float  # timing constraint given to nextpnr (the Fmax goal of issue 4)
    placer: str  # nextpnr placer that met the goal in the report (sa: simulated annealing, heap: analytic)

    def platform(self, target_mhz: float) -> tuple[object, float]:
        """(platform whose clock is constrained to `target_mhz` for place and route, board clock in Hz).

        The oscillator stays what it is (the UART divisor uses it); only nextpnr's timing target is
        raised, so the placer works for the Fmax goal instead of the board's 12/25 MHz."""
        if self.name == "icebreaker":
            from amaranth_boards.icebreaker import ICEBreakerPlatform as Platform
        else:
            from amaranth_boards.ulx3s import ULX3S_85F_Platform as Platform

        class BuildOnly(Platform):  # programming is `hw program`'s business, not a build requirement
            @property
            def required_tools(self) -> list[str]:
                return [t for t in super().required_tools if t not in ("openFPGALoader", "iceprog")]

        platform = BuildOnly()
        key = (platform.default_clk, 0)
        board_hz = platform.default_clk_frequency
        res = copy.copy(platform.resources[key])
        res.clock = Clock(target_mhz * 1e6)
        platform.resources[key] = res
        return platform, board_hz


BOARDS = {
    "icebreaker": Board("icebreaker", "iCE40UP5K", 5280, "ICESTORM_LC", 30 * 4096, 16, 0.6,
                        ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"), 30.0, "sa"),
    "ulx3s-85f": Board("ulx3s-85f", "LFE5U-85F", 83640, "TRELLIS_COMB", 208 * 18432, 64, 0.9,
                       ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"), 100.0, "heap"),
}  # fmt: skip


def estimate(p: HwParams, rom_words: int, ram_is_logic: bool) -> dict[str, int]:
    """Logic-cell and block-RAM need, calibrated on the builds in the report (within ~10% there).

    Without distributed RAM (iCE40) the per-agent pointer FIFOs and cost FIFOs are flip-flops and
    multiplexers, ~2.5 cells per stored bit; that term dominates on the iCE40."""
    n, ab, sb = p.agents, p.agent_bits, p.slot_bits
    per_agent = 2 * (
        p.depth.bit_length() + 16 + (16 if p.bucket_rate else 0) + p.mbox_depth.bit_length() + 12
    )
    per_agent += 2 * ab + (8 if p.max_cost > 1 else 0)
    per_slot = 2 * (ab + 1) + 6
    logic = int(1.4 * (700 + n * per_agent + p.slots * per_slot))  # 700: UART, host link, replayer
    if ram_is_logic:
        logic += int(2.5 * n * (p.mbox_depth * sb + (p.depth * p.cost_bits if p.max_cost > 1 else 0)))
    rom_bits = rom_words * (8 + 3 + 3 * ab + p.cost_bits + p.payload_bits + 1)
    store_bits = p.slots * (ab + p.payload_bits)
    return {"logic": logic, "bram_bits": rom_bits + store_bits}


def fit_check(p: HwParams, board: Board, rom_words: int) -> dict[str, int]:
    """The estimate, or ParamsError with the reason when the board cannot hold the design."""
    p.validate()
    if p.agents > board.max_agents:
        raise ParamsError(
            f"{board.name}: {p.agents} agents do not fit (at most {board.max_agents} on {board.device})"
        )
    est = estimate(p, rom_words, ram_is_logic=board.name == "icebreaker")
    budget = int(board.logic * board.logic_budget)
    if est["logic"] > budget:
        raise ParamsError(
            f"{board.name}: estimated {est['logic']} {board.logic_kind} exceed the budget of {budget}"
            f" ({board.logic_budget:.0%} of {board.logic}); reduce agents/depth/slots"
        )
    if est["bram_bits"] > board.bram_bits:
        raise ParamsError(
            f"{board.name}: replay ROM + message store need {est['bram_bits']} bits of block RAM, the"
            f" {board.device} has {board.bram_bits}; shorten the replay or reduce slots"
        )
    return est


class BoardTop(Elaboratable):
    """SystemTop on a board's clock, UART and two LEDs."""

    def __init__(self, params: HwParams, rom: list[dict], clk_hz: float) -> None:
        self.params, self.rom, self.clk_hz = params, rom, clk_hz

    def elaborate(self, platform: object) -> Module:
        m = Module()
        top = SystemTop(self.params, self.clk_hz, self.rom)
        m.submodules.top = top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        for i in range(2):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(top.leds[i])
        return m


FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz \((PASS|FAIL) at ([0-9.]+) MHz\)")
UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)


def parse_nextpnr(log: str) -> dict:
    """Utilisation per cell type and the final Fmax per clock from a nextpnr log."""
    util = {m[1]: {"used": int(m[2]), "total": int(m[3]), "percent": int(m[4])} for m in UTIL.finditer(log)}
    fmax = {}
    for m in FMAX.finditer(log):  # the last report (after routing) wins
        fmax[m[1]] = {"mhz": float(m[2]), "pass": m[3] == "PASS", "constraint_mhz": float(m[4])}
    return {"utilisation": util, "fmax": fmax}


def build(
    board_name: str,
    params: HwParams,
    rom: list[dict],
    seed: int = 1,
    target_mhz: float | None = None,
    placer: str | None = None,
    build_root: Path = BUILD,
) -> dict:
    """Fit check, bitstream, report dict (also written as report.json next to the bitstream)."""
    if board_name not in BOARDS:
        raise ParamsError(f"board {board_name!r}: expected one of {sorted(BOARDS)}")
    board = BOARDS[board_name]
    est = fit_check(params, board, len(rom))
    export_tools(*board.tools)
    target = target_mhz or board.target_mhz
    placer = placer or board.placer
    key = hashlib.sha256(
        (params.to_json() + json.dumps(rom) + f"{seed}/{target}/{placer}").encode()
    ).hexdigest()[:12]
    out = build_root / f"{board_name}-{key}"
    t0 = time.perf_counter()
    try:
        board_hz = _run(board, params, rom, out, seed, target, placer)
    except subprocess.CalledProcessError:
        if placer != "sa":
            raise ToolchainError(
                f"{board_name}: synthesis or place-and-route failed: {_log_errors(out)}"
            ) from None
        placer = "heap"  # nextpnr's annealer can fail to legalise carry chains on a full device
        try:
            board_hz = _run(board, params, rom, out, seed, target, placer)
        except subprocess.CalledProcessError:
            raise ToolchainError(
                f"{board_name}: synthesis or place-and-route failed: {_log_errors(out)}"
            ) from None
    built = {
        "params": json.loads(params.to_json())["params"],
        "rom_entries": len(rom),
        "seed": seed,
        "placer": placer,
        "rtl": rtl_digest(),
        "board_clock_mhz": board_hz / 1e6,
        "constraint_mhz": target,
        "estimate": est,
    }
    return write_report(board, out, time.perf_counter() - t0, built)


def write_report(board: Board, out: Path, seconds: float, built: dict) -> dict:
    """report.json of a finished build in `out`: what was built (`built`), then the bitstream, the
    logic use and the Fmax per clock that nextpnr reported."""
    pnr = parse_nextpnr((out / "clove.tim").read_text())
    bitstream = next(p for p in (out / "clove.bin", out / "clove.bit") if p.exists())
    cells = pnr["utilisation"].get(board.logic_kind, {})
    report = {
        "board": board.name,
        "device": board.device,
        **built,
        "build_seconds": round(seconds, 1),
        "bitstream": str(bitstream),
        "logic_used": cells.get("used"),
        "logic_percent": cells.get("percent"),
        **pnr,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


RTL_SOURCES = (
    "scheduler.py",
    "mailbox.py",
    "core.py",
    "hostlink.py",
    "uart.py",
    "replayer.py",
    "top.py",
    "build.py",
)


def rtl_digest() -> str:
    """Hash of the RTL sources: the report only shows builds of the RTL as it is now."""
    h = hashlib.sha256()
    for name in RTL_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def _run(
    board: Board, params: HwParams, rom: list[dict], out: Path, seed: int, target: float, placer: str
) -> float:
    platform, board_hz = board.platform(target)
    platform.build(BoardTop(params, rom, board_hz), name="clove", build_dir=str(out), do_program=False,
                   nextpnr_opts=f"--seed {seed} --placer {placer} --timing-allow-fail")  # fmt: skip
    return board_hz


def _log_errors(out: Path) -> str:
    lines = []
    for log in (out / "clove.rpt", out / "clove.tim"):
        if log.exists():
            lines += [ln.strip() for ln in log.read_text(errors="replace").splitlines() if "ERROR" in ln]
    return " | ".join(lines[-3:]) or f"see the logs in {out}"


def default_rom(params: HwParams, cycles: int = 2000, seed: int = 1) -> list[dict]:
    """A replay ROM from constrained-random stimulus (used when no trace is given)."""
    from clove_gym.sim.model import CycleIn
    from clove_gym.sim.stimulus import random_cycles

    stim = [CycleIn(enq=c.enq, send=c.send, recv=c.recv) for c in random_cycles(params, cycles, seed)]
    return rom_entries(params, stim)
