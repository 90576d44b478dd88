"""The crash-isolation scenario at a small scale (20 workers, 4 crash): sandboxed agents keep going and come
back under on-failure with backoff; threads and a multiprocessing.Pool lose what they are known to lose."""

from __future__ import annotations

import pytest
from clove_gym.benchmarks import crash_isolation
from clove_gym.benchmarks.crash_isolation import Scenario

SCENARIO = Scenario(workers=20, victims=4, seed=7, calm_s=0.5, observe_s=0.5, gap_bound_s=1.0)


@pytest.fixture(scope="module")
def report() -> crash_isolation.CrashReport:
    return crash_isolation.run(SCENARIO)


def _mode(report: crash_isolation.CrashReport, mode: str) -> crash_isolation.ModeResult:
    return next(r for r in report.results if r.mode == mode)


def test_victims_are_seeded_and_the_same_in_every_mode(report: crash_isolation.CrashReport) -> None:
    assert SCENARIO.victim_indices() == Scenario(workers=20, victims=4, seed=7).victim_indices()
    assert SCENARIO.victim_indices() != Scenario(workers=20, victims=4, seed=8).victim_indices()
    assert all(r.victims == SCENARIO.victim_indices() for r in report.results)


def test_agents_survivors_keep_going_and_victims_restart_with_backoff(
    report: crash_isolation.CrashReport,
) -> None:
    r = _mode(report, "agents")
    assert r.survivors_ok == 16, r  # contiguous counters, no stall over the bound
    assert r.survivor_gap_crash_ms <= 1000.0
    assert r.victims_back == 4 and r.same_ids, r.notes
    assert r.conn_id_changes == []  # every incarnation talks under its spawn id
    assert r.state_lost == 0  # each new incarnation resumed from its last stored counter
    assert r.backoff_ms is not None and r.backoff_ms.n == 4
    assert r.restart_ms is not None and r.restart_ms.min >= r.backoff_ms.min  # no restart skipped its backoff
    assert 0.0 < r.work_lost_pct < 100.0


def test_threads_die_together_on_a_sigkill(report: crash_isolation.CrashReport) -> None:
    r = _mode(report, "threads-sigkill")
    assert r.facts["process_exit"] == "killed by SIGKILL"
    assert r.survivors_ok == 0 and r.victims_back == 0
    assert r.work_lost_pct > 90.0


def test_threads_lose_only_the_victims_on_an_exception(report: crash_isolation.CrashReport) -> None:
    r = _mode(report, "threads-exception")
    assert r.survivors_ok == 16 and r.victims_back == 0
    assert r.work_lost_pct > 5.0  # the victims never come back


def test_pool_loses_the_in_flight_tasks_and_hangs_on_join(report: crash_isolation.CrashReport) -> None:
    r = _mode(report, "pool")
    assert r.survivors_ok == 16 and r.victims_back == 0
    assert r.facts["tasks_lost"] == 4
    assert r.facts["join_hung"] is True
    assert r.facts["workers_replaced"] >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 4, "victims": 4}, "victims: 4 must be fewer than workers (4)"),
        ({"workers": True}, "workers: expected an integer >= 2"),
        ({"victims": 0}, "victims: expected an integer >= 1"),
        ({"step_s": 0}, "step_s: expected a positive number"),
        ({"gap_bound_s": 0.02}, "gap_bound_s: 0.02 must be at least 5 steps"),
        ({"modes": ("agents", "fibers")}, "modes: expected some of"),
    ],
)
def test_bad_scenarios_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        crash_isolation.run(Scenario(**kwargs))  # type: ignore[arg-type]
    assert message in str(exc.value)
