"""`clove-gym`: the one command line of the project.

Each layer contributes its own command group through a `register(subparsers)` function; every subcommand
sets `func(args) -> int`, the exit status. Groups whose optional dependencies are missing still appear and
fail with a message that says what to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, group name, the extra that provides its dependencies)
GROUPS = (
    ("clove_gym.benchmarks.run_cli", "run", None),
    ("clove_gym.benchmarks.bench_cli", "bench", None),
    ("clove_gym.runtime.daemon", "kernel", None),
    ("clove_gym.runtime.trace.cli", "trace", None),
    ("clove_gym.hw.cli", "hw", "hw"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clove-gym",
        description="World simulation and benchmark harness for AI agents, with an FPGA co-design track.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module, name, extra in GROUPS:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            if extra is None:  # a core group that cannot import is a broken install: say so loudly
                raise
            _unavailable(sub, name, extra, exc)
            continue
        mod.register(sub)
    return parser


def _unavailable(sub: argparse._SubParsersAction, name: str, extra: str, exc: ImportError) -> None:
    hint = f"pip install 'clove-gym[{extra}]'"
    p = sub.add_parser(name, help=f"(unavailable: {exc.name or exc})", add_help=True)
    p.add_argument("rest", nargs=argparse.REMAINDER)

    def fail(_args: argparse.Namespace) -> int:
        print(
            f"error: `clove-gym {name}` is unavailable: {exc}. Install its dependencies: {hint}",
            file=sys.stderr,
        )
        return 2

    p.set_defaults(func=fail)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
