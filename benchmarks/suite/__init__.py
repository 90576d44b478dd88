"""Benchmark suites of scripted agents, the runner that isolates their tasks, and their reports."""

from clove_gym.benchmarks.suite.default import SMOKE
from clove_gym.benchmarks.suite.faults import FAULTS
from clove_gym.benchmarks.suite.task import Suite

SUITES: dict[str, Suite] = {s.name: s for s in (SMOKE, FAULTS)}
DEFAULT_SUITE = SMOKE.name

__all__ = ["DEFAULT_SUITE", "SUITES", "Suite"]
