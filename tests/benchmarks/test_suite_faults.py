"""The runner under faults: a hanging task times out, a crashing one is recorded, a broken grader or a
missing script fails only its own task, Ctrl-C stops the run cleanly, and no agent is ever left running."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from clove_gym.benchmarks.cli import main
from clove_gym.benchmarks.suite.options import RunOptions
from clove_gym.benchmarks.suite.runner import Runner
from clove_gym.benchmarks.suite.task import ERROR, PASSED, Grade, Suite, Task, TaskResult

ROOT = Path(__file__).resolve().parents[2]


def _live_children(proc: psutil.Process | None = None) -> set[int]:
    return {
        p.pid
        for p in (proc or psutil.Process()).children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    }


def test_hang_and_crash_are_recorded_and_cleaned_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _live_children()
    t0 = time.monotonic()
    code = main(["run", "suite", "--suite", "faults", "--timeout", "3", "--json", "--out", str(tmp_path)])
    elapsed = time.monotonic() - t0
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["status"] == "failed"
    tasks = {t["task"]: t for t in doc["tasks"]}
    assert tasks["hang"]["status"] == "timeout"
    assert tasks["hang"]["reason"] == "no result within 3 s"
    assert set(tasks["hang"]["killed_by_runner"]) == {"hang.r1", "hang.r1.sleeper"}
    assert tasks["crash"]["status"] == "crashed"
    assert "driver exited with status 3 before reporting" in tasks["crash"]["reason"]
    assert tasks["crash"]["agents"]["crash.r1"] == 3
    assert tasks["crash"]["killed_by_runner"] == ["crash.r1.sleeper"]
    assert tasks["healthy"]["status"] == "passed"  # the suite went on after both faults
    assert doc["leftover_processes_killed"] == []  # KILL through the kernel was enough
    assert _live_children() - before == set()
    assert elapsed < 60


def test_broken_grader_and_missing_script_fail_only_their_task(tmp_path: Path) -> None:
    def boom(_outcome: object) -> Grade:
        raise ZeroDivisionError("grader bug")

    def fine(outcome) -> Grade:  # type: ignore[no-untyped-def]
        return Grade(outcome.report.get("echo") == "still alive", 1.0, "ok")

    suite = Suite(
        "custom",
        "runner robustness",
        (
            Task("bad_grader", "grader raises", "fault_ok.py", boom),
            Task("no_script", "script missing", "does_not_exist.py", fine),
            Task("ok", "fine", "fault_ok.py", fine),
        ),
    )
    results: list[TaskResult] = []

    class Collect:
        def started(self, task: Task, repeat: int) -> None:
            pass

        def finished(self, result: TaskResult) -> None:
            results.append(result)

    before = _live_children()
    run = Runner(suite, suite.tasks, RunOptions(llm="fake"), tmp_path, Collect()).run()
    assert [r.status for r in run.results] == [ERROR, ERROR, PASSED]
    assert run.results[0].reason == "grader raised ZeroDivisionError: grader bug"
    assert "does_not_exist.py" in run.results[1].reason
    assert results == run.results
    assert not run.passed
    assert _live_children() - before == set()


def test_ctrl_c_stops_agents_and_still_writes_the_report(tmp_path: Path) -> None:
    # -X faulthandler: if the runner ever hangs after SIGINT, SIGABRT dumps every thread's stack
    cmd = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "clove_gym.benchmarks.cli",
        "run",
        "suite",
        "--suite",
        "faults",
    ]
    cmd += ["--only", "hang,healthy", "--timeout", "120", "--out", str(tmp_path)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a user's Ctrl-C reaches a foreground run; a run started from a background shell (as CI may
        # start the suite) inherits SIGINT ignored, and Python then keeps ignoring it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    runner = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + 60
        agents: list[psutil.Process] = []
        while len(agents) < 2:  # the hanging driver and its sleeping child
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the hang task's agents never started"
            time.sleep(0.1)
            agents = [
                p for p in runner.children(recursive=True) if any("fault_" in part for part in p.cmdline())
            ]
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the runner did not exit within 120 s of SIGINT; its threads then:\n{err[-12000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    gone, alive = psutil.wait_procs(agents, timeout=5)
    assert alive == []
    (report,) = list(tmp_path.iterdir())  # committed, no staging directory left behind
    doc = json.loads((report / "results.json").read_text())
    assert doc["status"] == "interrupted"
    assert [(t["task"], t["status"]) for t in doc["tasks"]] == [("hang", "interrupted")]
    assert (report / "trace.clvtrace").stat().st_size > 0
