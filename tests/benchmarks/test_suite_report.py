"""Report pieces without a kernel: atomic writes, the staging directory, and the graders' judgements."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from clove_gym.benchmarks import agents
from clove_gym.benchmarks.suite.default import grade_crash, grade_pingpong, grade_think
from clove_gym.benchmarks.suite.report import ReportDir, write_atomic
from clove_gym.benchmarks.suite.task import Outcome, from_checks


def test_write_atomic_replaces_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_atomic(target, "old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["results.json"]


def test_report_dir_is_hidden_until_committed_and_never_overwrites(tmp_path: Path) -> None:
    started = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = ReportDir(tmp_path, "smoke", started)
    assert first.staging.name.startswith(".smoke-20300102T030405Z.")
    (first.staging / "x").write_text("1")
    assert first.commit() == tmp_path / "smoke-20300102T030405Z"
    second = ReportDir(tmp_path, "smoke", started)
    assert second.commit() == tmp_path / "smoke-20300102T030405Z-2"
    dropped = ReportDir(tmp_path, "smoke", started)
    dropped.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "smoke-20300102T030405Z",
        "smoke-20300102T030405Z-2",
    ]


def test_from_checks_scores_and_names_failures() -> None:
    grade = from_checks({"a": True, "b": False, "c": False, "d": True})
    assert (grade.passed, grade.score) == (False, 0.5)
    assert grade.reason == "2/4 checks failed: b; c"
    assert from_checks({"a": True}).reason == "all 1 checks passed"
    assert not from_checks({}).passed


def _outcome(report: dict, exits: dict | None = None, names: tuple = ("t.r1",), llm: str = "fake") -> Outcome:
    return Outcome(report=report, exits=exits or {}, agent_names=names, llm=llm)


def test_crash_grader_demands_the_exit_codes_the_runner_saw() -> None:
    report = {
        "steps": 30,
        "crash_at": 10,
        "fates": {"a": "finish", "q": "exit3"},
        "exit_codes": {"a": 0, "q": 3},
        "progress": {"a": 30, "q": 10},
    }
    good = _outcome(report, {"t.r1.a": 0, "t.r1.q": 3})
    assert grade_crash(good).passed
    wrong = grade_crash(_outcome(report, {"t.r1.a": 0, "t.r1.q": 1}))
    assert not wrong.passed and "q (exit3) exit seen by the runner" in wrong.reason


def test_pingpong_grader_rejects_lost_or_reordered_pongs() -> None:
    report = {
        "rounds": 199,
        "expected_rounds": 200,
        "in_order": False,
        "payload_intact": True,
        "rtt_us": {"p50": 80},
    }
    grade = grade_pingpong(_outcome(report, {"t.r1.pong": 0}))
    assert not grade.passed and "every ping answered" in grade.reason and "pongs in order" in grade.reason


def test_think_grader_wants_the_echo_only_from_the_fake() -> None:
    answers = [{"prompt": p, "success": True, "content": "something", "tokens": 3} for p in range(3)]
    assert not grade_think(_outcome({"answers": answers}, llm="fake")).passed
    assert grade_think(_outcome({"answers": answers}, llm="gemini")).passed


def test_agent_scripts_resolve_and_missing_ones_are_named() -> None:
    assert agents.script("pingpong_driver.py").endswith("benchmarks/agents/pingpong_driver.py")
    with pytest.raises(FileNotFoundError, match="nope.py"):
        agents.script("nope.py")
