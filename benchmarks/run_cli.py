"""`clove-gym run suite`: run a benchmark suite of scripted agents on an embedded kernel and write a report.

Exit status: 0 when every task run passed, 1 when any did not, 2 on bad arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from clove_gym.benchmarks.interrupts import EXIT_INTERRUPTED, sigterm_as_interrupt
from clove_gym.benchmarks.suite import DEFAULT_SUITE, SUITES
from clove_gym.benchmarks.suite.options import LLM_MODES, RunOptions, resolve_llm
from clove_gym.benchmarks.suite.task import Task
from rich.console import Console

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run benchmark suites", description="Run benchmark suites.")
    sub = run.add_subparsers(dest="run_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "suite",
        help="run a suite of scripted agents and write a report",
        description="Run a suite of scripted agents (real processes spawned through an embedded kernel), "
        "grade every task, print a results table and write reports/<suite>-<UTC time>/ with results.json, "
        "results.csv, the workload trace and its summary, the audit log and report.html. Needs no daemon "
        "and, without GEMINI_API_KEY, no network (THINK goes to a local fake Gemini endpoint). "
        "Exit status: 0 all passed, 1 some failed, 2 bad arguments, 130 interrupted.",
    )
    p.add_argument(
        "--suite", default=DEFAULT_SUITE, help=f"suite to run: {', '.join(SUITES)} (default %(default)s)"
    )
    p.add_argument(
        "--out", default="reports", type=Path, help="directory for the report (default %(default)s)"
    )
    p.add_argument("--repeat", default=1, type=int, help="run every task N times (default 1)")
    p.add_argument("--timeout", type=float, help="seconds per task run, instead of each task's own")
    p.add_argument("--only", help="comma-separated task names to run (default: all)")
    p.add_argument(
        "--llm",
        choices=LLM_MODES,
        default="auto",
        help="THINK backend: auto (Gemini only with an API key), fake, gemini",
    )
    p.add_argument(
        "--scheduler",
        help="THINK queue decision backend: software (default), rtl (Verilated RTL in the loop), fpga:port=DEV,"
        " model; default $CLOVE_SCHEDULER or software",
    )
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    p.add_argument("--list", action="store_true", help="list the suites and their tasks, then exit")
    p.set_defaults(func=run_suite)


def _select(args: argparse.Namespace) -> tuple[str, list[Task]] | str:
    """The suite and tasks the arguments ask for, or the error message."""
    suite = SUITES.get(args.suite)
    if suite is None:
        return f"unknown suite {args.suite!r}; valid suites: {', '.join(SUITES)}"
    if args.repeat < 1:
        return f"--repeat must be at least 1, got {args.repeat}"
    if args.timeout is not None and not args.timeout > 0:
        return f"--timeout must be a positive number of seconds, got {args.timeout}"
    try:
        resolve_llm(args.llm)
    except ValueError as exc:
        return str(exc)
    from clove_gym.runtime.sched_backend import SchedulerBackendError, available, spec_name

    try:
        if spec_name(args.scheduler) not in available():
            return f"unknown THINK scheduler backend {spec_name(args.scheduler)!r}; valid: {', '.join(available())}"
    except SchedulerBackendError as exc:
        return str(exc)
    if not args.only:
        return suite.name, list(suite.tasks)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in suite.task_names()]
    if unknown or not wanted:
        return (
            f"unknown task(s) {', '.join(map(repr, unknown)) or '(none given)'} in suite {suite.name!r};"
            f" valid tasks: {', '.join(suite.task_names())}"
        )
    return suite.name, [t for t in suite.tasks if t.name in wanted]


def _list(console: Console) -> int:
    for suite in SUITES.values():
        console.print(f"[bold]{suite.name}[/]: {suite.summary}", highlight=False)
        for task in suite.tasks:
            console.print(f"  {task.name:<18} {task.summary}", highlight=False)
    return EXIT_OK


def _console(stream: TextIO) -> Console:
    """A terminal keeps its width; a pipe or file gets lines wide enough for the results table."""
    console = Console(file=stream)
    return console if console.is_terminal else Console(file=stream, width=160)


def run_suite(args: argparse.Namespace) -> int:
    out, err = _console(sys.stdout), _console(sys.stderr)
    if args.list:
        return _list(out)
    selected = _select(args)
    if isinstance(selected, str):
        err.print(f"error: {selected}", highlight=False, markup=False)
        return EXIT_USAGE
    # Imported here: the runner and the report pull in google-genai, pandas and matplotlib (seconds),
    # which every other `clove-gym` command would otherwise pay for when the parser is built.
    from clove_gym.benchmarks.suite.console import ConsoleProgress, repeat_table, results_table
    from clove_gym.benchmarks.suite.report import RESULTS_JSON, ReportDir, write_report
    from clove_gym.benchmarks.suite.runner import Runner

    suite_name, tasks = selected
    suite = SUITES[suite_name]
    options = RunOptions(repeat=args.repeat, timeout_s=args.timeout, llm=args.llm, scheduler=args.scheduler)
    console = err if args.json else out  # with --json, stdout carries only the JSON
    progress = ConsoleProgress(console, total=len(tasks) * args.repeat, repeat=args.repeat)
    report = None
    with sigterm_as_interrupt():
        try:
            started = datetime.now(UTC)
            report = ReportDir(args.out, suite.name, started)
            run = Runner(suite, tasks, options, report.staging, progress, started).run()
            progress.close()
            final = write_report(run, report)
        except (Exception, KeyboardInterrupt) as exc:  # the run itself absorbs Ctrl-C; this is set-up/report
            progress.close()
            if report is not None:
                report.discard()
            if isinstance(exc, KeyboardInterrupt):
                err.print("interrupted before the report was complete: nothing was written", highlight=False)
                return EXIT_INTERRUPTED
            err.print(
                f"error: the suite could not run: {type(exc).__name__}: {exc}", highlight=False, markup=False
            )
            return EXIT_FAILED
    if args.json:
        sys.stdout.write((final / RESULTS_JSON).read_text())
    else:
        out.print(results_table(run))
        extra = repeat_table(run)
        if extra is not None:
            out.print(extra)
        out.print(f"report: {final}", highlight=False)
    if run.interrupted:
        err.print("interrupted: the tasks that finished are in the report", highlight=False)
        return EXIT_INTERRUPTED
    return EXIT_OK if run.passed else EXIT_FAILED
