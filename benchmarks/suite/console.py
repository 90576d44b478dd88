"""What a person sees while a suite runs: a rich progress bar on a terminal, plain lines otherwise,
and the results table at the end."""

from __future__ import annotations

from statistics import median

from clove_gym.benchmarks.suite.runner import SuiteRun
from clove_gym.benchmarks.suite.task import PASSED, Task, TaskResult
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

_STYLE = {PASSED: "green"}
_TRACE_KEYS = {"syscalls", "messages", "service_p50_us", "service_p99_us"}


def _status(status: str) -> str:
    return f"[{_STYLE.get(status, 'red')}]{status}[/]"


def _label(result: TaskResult, repeat: int) -> str:
    return f"{result.task} #{result.repeat}" if repeat > 1 else result.task


def _metrics_text(result: TaskResult) -> str:
    """The agents' own figures: `rtt_us_p50` and `rtt_us_p99` become "rtt p50/p99 85/310 µs"."""
    pairs: dict[str, dict[str, float]] = {}
    for key, value in result.metrics.items():
        name, _, q = key.rpartition("_")
        if key not in _TRACE_KEYS and value is not None and q in ("p50", "p99"):
            pairs.setdefault(name, {})[q] = value
    parts = []
    for name, qs in pairs.items():
        label, _, unit = name.rpartition("_")
        unit = {"us": "µs"}.get(unit, unit)
        parts.append(f"{label} {'/'.join(qs)} {'/'.join(_num(v) for v in qs.values())} {unit}")
    return ", ".join(parts)


def _num(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


class ConsoleProgress:
    """A live progress bar when `console` is a terminal; one plain line per event when it is not."""

    def __init__(self, console: Console, total: int, repeat: int) -> None:
        self.console = console
        self.repeat = repeat
        self.done = 0
        self.total = total
        self._bar: Progress | None = None
        if console.is_terminal:
            self._bar = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._id = self._bar.add_task("starting", total=total)
            self._bar.start()

    def started(self, task: Task, repeat: int) -> None:
        label = f"{task.name} #{repeat}" if self.repeat > 1 else task.name
        if self._bar is not None:
            self._bar.update(self._id, description=label)
        else:
            self.console.print(f"[{self.done + 1}/{self.total}] {label}: {task.summary}", highlight=False)

    def finished(self, result: TaskResult) -> None:
        self.done += 1
        line = f"  {_label(result, self.repeat)}: {_status(result.status)} in {result.duration_s:.2f} s"
        if not result.passed:
            line += f" - {result.reason}"
        if self._bar is not None:
            self._bar.console.print(line, highlight=False)
            self._bar.advance(self._id)
        else:
            self.console.print(line, highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def results_table(run: SuiteRun) -> Table:
    repeat = run.options.repeat
    table = Table(
        title=f"suite {run.suite.name}: {sum(r.passed for r in run.results)}/{len(run.results)} passed"
    )
    for col, justify in (
        ("task", "left"),
        ("status", "left"),
        ("score", "right"),
        ("duration", "right"),
        ("syscalls", "right"),
        ("msgs", "right"),
        ("kernel µs p50/p99", "right"),
        ("agents' figures / reason", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in run.results:
        m = r.metrics
        p50, p99 = m.get("service_p50_us"), m.get("service_p99_us")
        table.add_row(
            _label(r, repeat),
            _status(r.status),
            f"{r.score:.2f}",
            f"{r.duration_s:.2f} s",
            str(m.get("syscalls", "-")),
            str(m.get("messages", "-")),
            f"{_num(p50)}/{_num(p99)}" if p50 is not None and p99 is not None else "-",
            _metrics_text(r) if r.passed else r.reason,
        )
    return table


def repeat_table(run: SuiteRun) -> Table | None:
    """With --repeat > 1: per task, the pass count and the duration's median and range."""
    if run.options.repeat <= 1:
        return None
    table = Table(title="over repeats")
    for col in ("task", "passed", "duration median", "min-max"):
        table.add_column(col)
    for task in run.tasks:
        runs = [r for r in run.results if r.task == task.name]
        if not runs:
            continue
        d = [r.duration_s for r in runs]
        table.add_row(
            task.name,
            f"{sum(r.passed for r in runs)}/{len(runs)}",
            f"{median(d):.2f} s",
            f"{min(d):.2f}-{max(d):.2f} s",
        )
    return table
