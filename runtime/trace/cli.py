"""`clove-gym trace summary|export`: the top-level CLI calls `register(subparsers)`.

Each subcommand sets `func(args) -> int` (0 ok, 2 unreadable trace or output); the top-level CLI
exits with that value. `python -m clove_gym.runtime.trace.cli` runs the same commands standalone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clove_gym.runtime.trace.reader import TraceFile, TraceFormatError, read_trace

EXIT_BAD_INPUT = 2
_SUFFIX = {"parquet": ".parquet", "perfetto": ".perfetto.json"}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `trace` with its `summary` and `export` subcommands; returns the `trace` parser."""
    trace = subparsers.add_parser(
        "trace",
        help="inspect and convert workload traces (.clvtrace)",
        description="Inspect and convert workload traces written by the kernel (format: runtime/trace/FORMAT.md).",
    )
    commands = trace.add_subparsers(dest="trace_command", metavar="COMMAND", required=True)
    strict_help = "fail on the first bad or truncated record instead of reading up to it"

    summary = commands.add_parser(
        "summary",
        help="counts, latency, sizes, rates and concurrency of a trace",
        description="Summarise a trace: counts per kind/opcode/event/agent, service latency and queue wait "
        "(p50/p99/p99.9/max), payload sizes, arrival rate, agents active per 10 ms, duration.",
    )
    summary.add_argument("file", type=Path, help="the .clvtrace file")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    summary.add_argument("--strict", action="store_true", help=strict_help)
    summary.set_defaults(func=_summary)

    export = commands.add_parser(
        "export",
        help="convert a trace to Parquet or Perfetto (Chrome trace-event JSON)",
        description="Convert a trace: Parquet (one row per record) or Chrome trace-event JSON that opens in "
        "Perfetto (a track per agent, SEND→RECV flow arrows). The output is written atomically.",
    )
    export.add_argument("file", type=Path, help="the .clvtrace file")
    export.add_argument("--format", required=True, choices=sorted(_SUFFIX), help="output format")
    export.add_argument(
        "-o", "--output", type=Path, help="output file (default: FILE with .parquet / .perfetto.json suffix)"
    )
    export.add_argument("--strict", action="store_true", help=strict_help)
    export.set_defaults(func=_export)
    return trace


def _load(args: argparse.Namespace) -> TraceFile | None:
    try:
        trace = read_trace(args.file, strict=args.strict)
    except TraceFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"error: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return None
    if trace.stop_reason:
        print(f"warning: {trace.stop_reason}; {trace.ignored_bytes} bytes ignored", file=sys.stderr)
    return trace


def _summary(args: argparse.Namespace) -> int:
    from clove_gym.runtime.trace.summary import print_summary, summarize

    trace = _load(args)
    if trace is None:
        return EXIT_BAD_INPUT
    result = summarize(trace)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return 0


def _export(args: argparse.Namespace) -> int:
    from clove_gym.runtime.trace.export import write_parquet, write_perfetto

    trace = _load(args)
    if trace is None:
        return EXIT_BAD_INPUT
    out = args.output or args.file.with_name(args.file.stem + _SUFFIX[args.format])
    try:
        (write_parquet if args.format == "parquet" else write_perfetto)(trace, out)
    except OSError as exc:
        print(f"error: {out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {out} ({len(trace.records)} records)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `trace summary|export ...` as under `clove-gym`."""
    parser = argparse.ArgumentParser(prog="clove-gym")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
