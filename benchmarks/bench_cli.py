"""`clove-gym bench ...`: micro-benchmarks of the project's layers, each printed next to its baseline.

Each subcommand is one `(name, help, add_arguments, run)` entry in BENCHES; a sibling (e.g. `bench
isolation`) is added by appending its entry, and gets `--quick`, `--json` and `--out` for free.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

from clove_gym.benchmarks.interrupts import EXIT_INTERRUPTED, sigterm_as_interrupt

DEFAULT_OUT = "reports/bench"


@dataclass(frozen=True)
class Bench:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _runtime_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cpus",
        choices=("same", "split"),
        default="same",
        help="placement: kernel and client on one CPU (same) or on two (split); baselines likewise",
    )
    p.add_argument(
        "--plane",
        choices=("both", "native", "python"),
        default="both",
        help="which kernel data plane to measure: the C one, the pure-Python twin, or both (default)",
    )


def _runtime(args: argparse.Namespace) -> int:
    from clove_gym.benchmarks import runtime_bench

    planes = ("native", "python") if args.plane == "both" else (args.plane,)
    try:
        report = runtime_bench.run(args.cpus, args.quick, planes)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: bench runtime: {exc}", file=sys.stderr)
        return 1
    path = runtime_bench.write_json(report, args.out)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from rich.console import Console

        console = Console()
        console.print(runtime_bench.render(report))
        for note in report.notes:
            console.print(f"note: {note}")
        met = sum(1 for f in report.figures if f.passed and f.target != "reported")
        total = sum(1 for f in report.figures if f.target != "reported")
        console.print(f"{met}/{total} targets met in {report.seconds:.0f}s; JSON: {path}")
    return 0


def _isolation_arguments(p: argparse.ArgumentParser) -> None:
    from clove_gym.benchmarks import isolation_bench

    isolation_bench.add_arguments(p)


def _isolation(args: argparse.Namespace) -> int:
    from clove_gym.benchmarks import isolation_bench

    return isolation_bench.main(args)


BENCHES: list[Bench] = [
    Bench(
        "runtime", "kernel round trip, IPC throughput, 64 clients, tracing cost", _runtime_arguments, _runtime
    ),
    Bench(
        "isolation",
        "sandboxed spawn/kill latency, 200 concurrent agents, crash isolation vs threads and a Pool",
        _isolation_arguments,
        _isolation,
    ),
]


def _interruptible(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the benchmark's with-blocks stop its kernel
    process and agents and remove its temp dirs; either ends in one line and exit 130, not a traceback.
    Reports are written whole at the end (temp file + rename), so none is left half-written."""

    def run_interruptibly(args: argparse.Namespace) -> int:
        try:
            with sigterm_as_interrupt():
                return run(args)
        except KeyboardInterrupt:
            print(f"bench {args.bench_command}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED

    return run_interruptibly


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` group and its subcommands to the top-level CLI."""
    group = subparsers.add_parser(
        "bench", help="run benchmarks (figures next to same-run baselines)", description=__doc__
    )
    cmds = group.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for bench in BENCHES:
        p = cmds.add_parser(bench.name, help=bench.help, description=bench.help)
        p.add_argument("--quick", action="store_true", help="a short run (~20 s) with fewer repetitions")
        p.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
        p.add_argument(
            "--out", default=DEFAULT_OUT, help=f"directory for the JSON report (default {DEFAULT_OUT})"
        )
        bench.add_arguments(p)
        p.set_defaults(func=_interruptible(bench.run))
