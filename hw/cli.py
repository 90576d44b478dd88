"""`clove-gym hw ...`: trace analysis, sweep, RTL simulation, bitstream builds, programming, report.

Every subcommand writes its outputs atomically under `reports/hw/` (or `--out`) and returns an exit
status; bad input (unreadable trace, bad parameters, missing tool) is one clear line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clove_gym.sim.params import HwParams

OUT = Path("reports/hw")


def register(subparsers: argparse._SubParsersAction) -> None:
    hw = subparsers.add_parser("hw", help="hardware co-design: analyze traces, simulate, build bitstreams")
    sub = hw.add_subparsers(dest="hw_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("analyze", help="trace statistics, derived sizes, plots and the RTL parameter file")
    p.add_argument("traces", nargs="+", metavar="TRACE", help=".clvtrace files")
    p.add_argument("--out", type=Path, default=OUT, help="output directory (default reports/hw)")
    p.add_argument("--params-out", type=Path, help="parameter file (default OUT/params.json)")
    p.add_argument("--ns-per-cycle", type=float, default=1000.0, help="trace ns per replay cycle")
    p.add_argument("--max-gap", type=int, default=64, help="longest idle gap kept in a replay, in cycles")
    p.set_defaults(func=_analyze)

    p = sub.add_parser("sweep", help="design-space sweep: depth x agents x policy vs drop rate and latency")
    p.add_argument("traces", nargs="+", metavar="TRACE")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--depths", default="2,4,8,16,32", help="comma-separated queue depths")
    p.add_argument("--agents", default="4,8,16,32", help="comma-separated agent slot counts")
    p.add_argument("--policies", default="drr,fifo,sp", help="comma-separated: drr, fifo, sp")
    p.add_argument("--load", type=float, default=0.9, help="mean offered load of the consumer (0, 4]")
    p.add_argument("--capacity", type=float, default=0.125, help="share of cycles the consumer takes one")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("build", help="bitstream with the YoWASP tools + resource and Fmax report")
    p.add_argument("--board", required=True, choices=["icebreaker", "ulx3s-85f"])
    p.add_argument("--params", type=Path, help="parameter file from `hw analyze` (default: built-in sizes)")
    p.add_argument("--agents", type=int, help="override the agent count of the parameters")
    p.add_argument("--mbox-depth", type=int, help="override the per-agent mailbox depth")
    p.add_argument("--trace", nargs="*", default=[], help="traces for the on-chip replayer ROM")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    p.add_argument("--target-mhz", type=float, help="timing constraint for nextpnr (default 30 / 100)")
    p.add_argument(
        "--placer", choices=["heap", "sa"], help="nextpnr placer (default sa on iCE40, heap on ECP5)"
    )
    p.add_argument(
        "--width",
        type=int,
        help="build the K-wide scheduler (K decisions per cycle, unit turns only) instead",
    )
    p.add_argument(
        "--structure", choices=["chain", "prefix", "rank"], help="lane selection of --width (default rank)"
    )
    p.add_argument("--out", type=Path, default=OUT)
    p.set_defaults(func=_build)

    p = sub.add_parser("program", help="program an attached board with the newest bitstream")
    p.add_argument("--board", required=True, choices=["icebreaker", "ulx3s-85f"])
    p.add_argument("--bitstream", type=Path, help="bitstream file (default: the newest build for the board)")
    p.set_defaults(func=_program)

    p = sub.add_parser(
        "sim", help="replay on the Verilated RTL against the golden model (cycles/s, mismatches)"
    )
    p.add_argument("--params", type=Path)
    p.add_argument("--trace", nargs="*", default=[], help="traces to replay (default: random stimulus)")
    p.add_argument("--cycles", type=int, default=100_000, help="random cycles when no trace is given")
    p.add_argument("--cocotb", action="store_true", help="also run the cocotb scoreboard (slower)")
    p.add_argument("--out", type=Path, default=OUT)
    p.set_defaults(func=_sim)

    p = sub.add_parser("report", help="the issue-4 figures: latencies, decision rate, Fmax, speedup")
    p.add_argument("--params", type=Path)
    p.add_argument("--trace", nargs="*", default=[], help="traces for the decision-rate replay")
    p.add_argument("--out", type=Path, default=OUT)
    p.set_defaults(func=_report)


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError:
        raise SystemExit(f"error: --{what} {text!r}: expected comma-separated integers") from None


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _analyze(args: argparse.Namespace) -> int:
    from clove_gym.sim.analyze import analyze, table, write_outputs
    from clove_gym.sim.params import ParamsError
    from clove_gym.sim.workload import WorkloadError

    try:
        result = analyze(args.traces, args.ns_per_cycle, args.max_gap)
        files = write_outputs(result, args.traces, args.out, args.params_out)
    except (WorkloadError, ParamsError) as e:
        return _fail(str(e))
    print(table(result), end="")
    print(json.dumps(files, indent=2))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from clove_gym.sim.model import POLICIES
    from clove_gym.sim.params import ParamsError
    from clove_gym.sim.sweep import sweep, write_outputs
    from clove_gym.sim.workload import WorkloadError

    policies = [p for p in args.policies.split(",") if p]
    bad = [p for p in policies if p not in POLICIES]
    if bad:
        return _fail(f"--policies: unknown {bad}; choose from {list(POLICIES)}")
    try:
        rows = sweep(
            args.traces,
            _ints(args.depths, "depths"),
            _ints(args.agents, "agents"),
            policies,
            args.load,
            args.capacity,
        )
        files = write_outputs(rows, args.out)
    except (WorkloadError, ParamsError, ValueError) as e:
        return _fail(str(e))
    print(f"{'policy':6} {'agents':>6} {'depth':>5} {'drop':>7} {'p50':>7} {'p99':>8}")
    for r in rows:
        print(
            f"{r['policy']:6} {r['agents']:6d} {r['depth']:5d} {r['drop_rate']:7.3f}"
            f" {r['latency_p50']:7.1f} {r['latency_p99']:8.1f}"
        )
    print(json.dumps(files, indent=2))
    return 0


def _params(path: Path | None, agents: int | None = None, mbox_depth: int | None = None) -> HwParams:
    from dataclasses import replace

    from clove_gym.sim.params import HwParams

    p = HwParams.load(path) if path else HwParams()
    if agents is not None:
        p = replace(p, agents=agents, weights=())
    if mbox_depth is not None:
        p = replace(p, mbox_depth=mbox_depth)
    return p.validate()


def _build(args: argparse.Namespace) -> int:
    from clove_gym.sim.params import ParamsError, write_atomic
    from clove_gym.sim.workload import WorkloadError, cycles_of, load_events

    from .build import build, default_rom
    from .replayer import rom_entries
    from .toolchain import ToolchainError

    if args.width is not None:
        return _build_wide(args)
    try:
        params = _params(args.params, args.agents, args.mbox_depth)
        if args.trace:
            rom = rom_entries(params, cycles_of(load_events(args.trace, params, 2000.0, 16)))
        else:
            rom = default_rom(params)
        report = build(
            args.board, params, rom, seed=args.seed, target_mhz=args.target_mhz, placer=args.placer
        )
    except (ParamsError, WorkloadError, ToolchainError) as e:
        return _fail(str(e))
    path = write_atomic(args.out / f"build-{args.board}-{params.agents}.json", json.dumps(report, indent=2))
    for clock, f in report["fmax"].items():
        print(
            f"{args.board}: {clock}: Fmax {f['mhz']:.2f} MHz (constraint {f['constraint_mhz']:.0f} MHz, seed {args.seed})"
        )
    print(
        f"{args.board}: logic {report['logic_used']} ({report['logic_percent']}%), {report['build_seconds']} s"
    )
    print(f"bitstream {report['bitstream']}\nreport {path}")
    return 0


def _build_wide(args: argparse.Namespace) -> int:
    from clove_gym.sim.params import ParamsError, write_atomic
    from clove_gym.sim.wide import WideParams

    from .toolchain import ToolchainError
    from .wide_build import STRUCTURE, wide_build

    if args.trace:
        return _fail("--trace: the wide build is fed by on-chip generators, not a replay ROM")
    try:
        params = WideParams(_params(args.params, args.agents, args.mbox_depth), args.width).validate()
        report = wide_build(args.board, params, seed=args.seed, target_mhz=args.target_mhz, placer=args.placer,
                            structure=args.structure or STRUCTURE)  # fmt: skip
    except (ParamsError, ToolchainError) as e:
        return _fail(str(e))
    name = f"build-{args.board}-{params.agents}-wide{params.width}-seed{args.seed}.json"
    path = write_atomic(args.out / name, json.dumps(report, indent=2))
    for clock, f in report["fmax"].items():
        print(f"{args.board} width {params.width}: {clock}: Fmax {f['mhz']:.2f} MHz"
              f" (constraint {f['constraint_mhz']:.0f} MHz, seed {args.seed})")  # fmt: skip
    print(
        f"{args.board}: logic {report['logic_used']} ({report['logic_percent']}%), {report['build_seconds']} s"
    )
    print(f"bitstream {report['bitstream']}\nreport {path}")
    return 0


def _program(args: argparse.Namespace) -> int:
    from .program import ProgramError, program

    try:
        print(program(args.board, args.bitstream))
    except ProgramError as e:
        return _fail(str(e))
    return 0


def _sim(args: argparse.Namespace) -> int:
    from clove_gym.sim import model
    from clove_gym.sim.params import ParamsError, write_atomic
    from clove_gym.sim.stimulus import random_cycles
    from clove_gym.sim.workload import WorkloadError, cycles_of, load_events

    from .toolchain import ToolchainError
    from .verilate import replay

    try:
        params = _params(args.params)
        if args.trace:
            cycles = list(cycles_of(load_events(args.trace, params, 2000.0, 16), 64))
        else:
            cycles = list(random_cycles(params, args.cycles, seed=1))
        run = replay(params, cycles)
        ref = model.Core(params)
        mismatches = sum(ref.step(inp) != got for inp, got in zip(cycles, run.outputs, strict=True))
        result = {"cycles": run.cycles, "seconds": run.seconds, "cycles_per_s": run.cycles_per_s,
                  "mismatches": mismatches, "decisions": ref.stats.decisions}  # fmt: skip
        if args.cocotb:
            from .cocotb_run import run_cocotb

            segs = [{"kind": "trace", "path": t, "ns_per_cycle": 2000.0, "max_gap": 16} for t in args.trace]
            segs = segs or [{"kind": "random", "profile": "random", "seed": 1, "cycles": 5000}]
            result["cocotb"] = run_cocotb(params, segs)
    except (ParamsError, WorkloadError, ToolchainError) as e:
        return _fail(str(e))
    path = write_atomic(args.out / "sim.json", json.dumps(result, indent=2))
    print(
        f"verilator: {run.cycles} cycles, {run.cycles_per_s / 1e6:.2f} M cycles/s, {mismatches} mismatches vs model"
    )
    if "cocotb" in result:
        c = result["cocotb"]
        print(f"cocotb: {c['cycles']} cycles, {c['cycles_per_s']:.0f} cycles/s, {c['mismatches']} mismatches,"
              f" coverage {c['coverage']['hit']}/{c['coverage']['goals']}")  # fmt: skip
    print(f"report {path}")
    return 1 if mismatches or result.get("cocotb", {}).get("mismatches") else 0


def _report(args: argparse.Namespace) -> int:
    from clove_gym.sim.params import ParamsError
    from clove_gym.sim.workload import WorkloadError

    from .report import make_report, markdown, write
    from .toolchain import ToolchainError

    try:
        r = make_report(_params(args.params), args.trace)
    except (ParamsError, WorkloadError, ToolchainError) as e:
        return _fail(str(e))
    print(markdown(r), end="")
    print(json.dumps(write(r, args.out), indent=2))
    return 0
