"""What a suite is made of: tasks (a driver agent script, its parameters, a grader) and their results."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# How a task run ended. Only "passed" counts as a pass; the others say why not.
PASSED, FAILED, TIMEOUT, CRASHED, ERROR, INTERRUPTED = (
    "passed",
    "failed",
    "timeout",
    "crashed",
    "error",
    "interrupted",
)
STATUSES = (PASSED, FAILED, TIMEOUT, CRASHED, ERROR, INTERRUPTED)


@dataclass(frozen=True)
class Grade:
    passed: bool
    score: float  # 0..1
    reason: str


@dataclass(frozen=True)
class Outcome:
    """What the runner saw of one task run, handed to the grader."""

    report: dict[str, Any]  # the driver's result message
    exits: Mapping[str, int]  # agent name -> exit status seen in AGENT_EXITED (128+signal for a signal)
    agent_names: tuple[str, ...]  # every agent of the run, driver first
    llm: str  # "fake" or "gemini": graders may only demand exact answers from the fake


@dataclass(frozen=True)
class Task:
    """One scripted scenario. `script` (in benchmarks/agents) is spawned as the driver agent with
    `params` in the state store; `grade` judges its report; `metrics` picks the figures worth a column
    out of the report (e.g. RTT percentiles)."""

    name: str
    summary: str
    script: str
    grade: Callable[[Outcome], Grade]
    params: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    metrics: Callable[[dict[str, Any]], dict[str, float]] = lambda _report: {}


@dataclass(frozen=True)
class Suite:
    name: str
    summary: str
    tasks: tuple[Task, ...]

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


@dataclass
class TaskResult:
    """One run of one task, as it goes into results.json / results.csv."""

    task: str
    repeat: int
    status: str
    score: float
    reason: str
    duration_s: float
    agents: dict[str, int | None] = field(default_factory=dict)  # name -> exit status, None if never seen
    killed: list[str] = field(default_factory=list)  # agents still running at the end, killed by the runner
    metrics: dict[str, float | None] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    agent_ids: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASSED


def from_checks(checks: Mapping[str, bool]) -> Grade:
    """Pass when every named check holds; the score is the fraction that hold; the reason names failures."""
    if not checks:
        return Grade(False, 0.0, "no checks were made")
    failed = [name for name, ok in checks.items() if not ok]
    score = round((len(checks) - len(failed)) / len(checks), 3)
    if failed:
        return Grade(False, score, f"{len(failed)}/{len(checks)} checks failed: " + "; ".join(failed))
    return Grade(True, score, f"all {len(checks)} checks passed")
