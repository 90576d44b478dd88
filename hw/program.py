"""`hw program`: send a bitstream to an attached board with iceprog / openFPGALoader.

Both tools are looked up on PATH (they are not on PyPI); a missing tool, a missing bitstream and a
board that is not attached are each a ProgramError with a message saying which.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .verilate import BUILD

TOOLS = {"icebreaker": ("iceprog", [], ".bin"), "ulx3s-85f": ("openFPGALoader", ["-b", "ulx3s"], ".bit")}


class ProgramError(RuntimeError):
    """Programming could not be done; the message says why."""


def newest_bitstream(board: str, build_root: Path = BUILD) -> Path:
    ext = TOOLS[board][2]
    found = sorted(build_root.glob(f"{board}-*/clove{ext}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ProgramError(
            f"no {board} bitstream under {build_root}: run `clove-gym hw build --board {board}` first"
        )
    return found[-1]


def program(board: str, bitstream: Path | None = None, timeout: float = 120.0) -> str:
    """Program the board; returns the tool's summary line."""
    if board not in TOOLS:
        raise ProgramError(f"board {board!r}: expected one of {sorted(TOOLS)}")
    tool, args, _ = TOOLS[board]
    path = bitstream or newest_bitstream(board)
    if not path.exists():
        raise ProgramError(f"{path}: no such bitstream")
    exe = shutil.which(tool)
    if exe is None:
        raise ProgramError(f"{tool} not found on PATH: install it to program the {board} (e.g. apt-get install "
                           f"{'fpga-icestorm' if tool == 'iceprog' else 'openfpgaloader'})")  # fmt: skip
    try:
        proc = subprocess.run([exe, *args, str(path)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"{tool} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ProgramError(
            f"{tool} failed (exit {proc.returncode}), is a {board} attached? " + " | ".join(tail)
        )
    return f"{board} programmed with {path}"
