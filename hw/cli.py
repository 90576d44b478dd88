"""`clove-gym hw ...`: trace analysis, sweep, RTL simulation, bitstream builds, programming, report.

Every subcommand writes its outputs atomically under `reports/hw/` (or `--out`) and returns an exit
status; bad input (unreadable trace, bad parameters, missing tool) is one clear line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
