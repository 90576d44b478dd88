"""Fmax builds of the K-wide scheduler (`clove-gym hw build --width K`), beside the width-1 flow.

Same boards, tools and nextpnr report as hw/build.py (reused, not changed, so the width-1 builds and
their RTL digest stay as they are); the top is hw/wide_top.py. Parameters the wide scheduler cannot
implement, or a board cannot hold, are refused before any synthesis.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

from clove_gym.sim.params import ParamsError
from clove_gym.sim.wide import WideParams

from .build import BOARDS, Board, _log_errors, write_report
from .toolchain import ToolchainError, export_tools
from .verilate import BUILD
from .wide_select import check_structure
from .wide_top import WideBoardTop

WIDE_SOURCES = ("wide_scheduler.py", "wide_select.py", "wide_top.py", "wide_build.py", "scheduler.py")
LEDS = {"icebreaker": 2, "ulx3s-85f": 8}
STRUCTURE = "rank"  # the fastest lane selection on the ECP5 (SPEC.md §8: all three measured)


def wide_digest() -> str:
    """Hash of the wide RTL sources: the report only shows builds of the wide RTL as it is now."""
    h = hashlib.sha256()
    for name in WIDE_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    h.update((Path(__file__).parent.parent / "sim" / "wide.py").read_bytes())
    return h.hexdigest()[:16]


def wide_estimate(p: WideParams, board: Board) -> int:
    """Logic cells: each of the K lanes compares every bit of the (K + 1) x N segment word, plus per agent
    its count, thresholds and ports, and the generators/checksum of the top. Fitted to the builds at 8
    agents (ECP5 TRELLIS_COMB: K=4 3271, K=8 7820; iCE40 LC: K=2 1216, K=4 2596); other agent counts
    are extrapolated."""
    n, k = p.agents, p.width
    if board.name == "icebreaker":
        return 12 * k * (k + 1) * n + 80 * n
    return 11 * k * (k + 1) * n + 190 * n


def wide_fit_check(p: WideParams, board: Board) -> int:
    """The estimate, or ParamsError with the reason when the parameters or the board do not allow it."""
    p.validate()
    if p.agents > board.max_agents:
        raise ParamsError(
            f"{board.name}: {p.agents} agents do not fit (at most {board.max_agents} on {board.device})"
        )
    est = wide_estimate(p, board)
    budget = int(board.logic * board.logic_budget)
    if est > budget:
        raise ParamsError(
            f"{board.name}: width {p.width} x {p.agents} agents: estimated {est} {board.logic_kind} exceed"
            f" the budget of {budget} ({board.logic_budget:.0%} of {board.logic}); reduce width or agents"
        )
    return est


def wide_build(
    board_name: str,
    params: WideParams,
    seed: int = 1,
    target_mhz: float | None = None,
    placer: str | None = None,
    structure: str = STRUCTURE,
    build_root: Path = BUILD,
) -> dict:
    """Fit check, bitstream, report dict (also written as report.json next to the bitstream)."""
    if board_name not in BOARDS:
        raise ParamsError(f"board {board_name!r}: expected one of {sorted(BOARDS)}")
    check_structure(structure, params.width)
    board = BOARDS[board_name]
    est = wide_fit_check(params, board)
    export_tools(*board.tools)
    target = target_mhz or board.target_mhz
    placer = placer or board.placer
    key = hashlib.sha256(
        f"{params.base.to_json()}/{params.width}/{structure}/{seed}/{target}/{placer}".encode()
    ).hexdigest()[:12]
    out = build_root / f"{board_name}-wide{params.width}-{key}"
    platform, board_hz = board.platform(target)
    t0 = time.perf_counter()
    try:
        platform.build(WideBoardTop(params, structure, LEDS[board_name]), name="clove", build_dir=str(out),
                       do_program=False,
                       nextpnr_opts=f"--seed {seed} --placer {placer} --timing-allow-fail")  # fmt: skip
    except subprocess.CalledProcessError:
        raise ToolchainError(
            f"{board_name}: synthesis or place-and-route failed: {_log_errors(out)}"
        ) from None
    built = {
        "width": params.width,
        "structure": structure,
        "params": json.loads(params.base.to_json())["params"],
        "seed": seed,
        "placer": placer,
        "rtl": wide_digest(),
        "board_clock_mhz": board_hz / 1e6,
        "constraint_mhz": target,
        "estimate": {"logic": est},
    }
    return write_report(board, out, time.perf_counter() - t0, built)
