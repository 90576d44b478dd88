"""`clove-gym run suite` end to end: the real smoke suite (spawned agent processes, embedded kernel, fake
Gemini), its report directory and files, --only/--repeat/--json, and argument errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import psutil
import pytest
from clove_gym.benchmarks.cli import main
from clove_gym.benchmarks.suite import SUITES
from clove_gym.runtime.trace.reader import read_trace

SMOKE_TASKS = SUITES["smoke"].task_names()


def _live_children() -> set[int]:
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    }


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One full run of the default suite, shared by the tests that inspect it."""
    out = tmp_path_factory.mktemp("reports")
    before = _live_children()
    code = main(["run", "suite", "--out", str(out), "--llm", "fake"])
    (report,) = [p for p in out.iterdir()]
    return {"code": code, "out": out, "report": report, "left": _live_children() - before}


def test_full_suite_passes_and_leaves_no_agent(smoke_run: dict) -> None:
    doc = json.loads((smoke_run["report"] / "results.json").read_text())
    failed = {t["task"]: t["reason"] for t in doc["tasks"] if not t["passed"]}
    assert failed == {}, failed
    assert smoke_run["code"] == 0
    assert smoke_run["left"] == set()
    assert doc["status"] == "passed"
    assert [t["task"] for t in doc["tasks"]] == SMOKE_TASKS
    assert doc["leftover_processes_killed"] == []


def test_report_directory_holds_every_file_and_nothing_half_written(smoke_run: dict) -> None:
    report: Path = smoke_run["report"]
    assert report.name.startswith("smoke-") and report.name.endswith("Z")
    names = {p.name for p in report.iterdir()}
    assert {
        "results.json",
        "results.csv",
        "trace.clvtrace",
        "trace-summary.json",
        "audit.jsonl",
        "report.html",
        "durations.png",
        "latency.png",
    } <= names
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    assert [p.name for p in smoke_run["out"].iterdir()] == [report.name]  # no staging directory left


def test_results_carry_grades_and_metrics(smoke_run: dict) -> None:
    doc = json.loads((smoke_run["report"] / "results.json").read_text())
    by_task = {t["task"]: t for t in doc["tasks"]}
    for t in doc["tasks"]:
        assert t["score"] == 1.0 and t["reason"].startswith("all ")
        assert t["duration_s"] > 0
        assert t["metrics"]["syscalls"] > 0 and t["metrics"]["service_p50_us"] is not None
    ping = by_task["ipc_pingpong"]
    assert ping["report"]["rounds"] == 200
    assert 0 < ping["metrics"]["rtt_us_p50"] <= ping["metrics"]["rtt_us_p99"]
    assert ping["metrics"]["messages"] >= 400  # 210 pings + 210 pongs from the task's agents
    exits = by_task["crash_tolerance"]["agents"]
    assert exits["crash_tolerance.r1.quitter"] == 3 and exits["crash_tolerance.r1.victim"] == 137
    assert exits["crash_tolerance.r1.steady0"] == 0 and exits["crash_tolerance.r1"] == 0
    answers = by_task["think"]["report"]["answers"]
    assert all(a["content"] == f"echo: {a['prompt']}" for a in answers)
    assert doc["environment"]["llm"].startswith("fake")
    assert doc["environment"]["think_scheduler"] == "software"  # the default, recorded


def test_csv_matches_json(smoke_run: dict) -> None:
    frame = pd.read_csv(smoke_run["report"] / "results.csv")
    doc = json.loads((smoke_run["report"] / "results.json").read_text())
    assert list(frame["task"]) == SMOKE_TASKS
    assert list(frame["status"]) == ["passed"] * len(SMOKE_TASKS)
    ping = frame.set_index("task").loc["ipc_pingpong"]
    assert ping["metrics.rtt_us_p50"] == pytest.approx(doc["tasks"][0]["metrics"]["rtt_us_p50"])


def test_trace_summary_and_audit_cover_the_run(smoke_run: dict) -> None:
    report: Path = smoke_run["report"]
    trace = read_trace(report / "trace.clvtrace", strict=True)
    summary = json.loads((report / "trace-summary.json").read_text())
    assert summary["file"]["records"] == len(trace.records) > 1000
    assert {"SPAWN", "SEND", "RECV", "BROADCAST", "STORE", "THINK", "EXEC"} <= set(summary["syscalls"])
    assert summary["events"]["AGENT_EXITED"] >= summary["events"]["AGENT_SPAWNED"] > 7
    audit = [json.loads(line) for line in (report / "audit.jsonl").read_text().splitlines()]
    spawned = {e["agent_name"] for e in audit if e["event_type"] == "AGENT_SPAWNED"}
    assert {f"{t}.r1" for t in SMOKE_TASKS} <= spawned
    html = (report / "report.html").read_text()
    assert "durations.png" in html and "latency.png" in html and "crash_tolerance" in html
    assert (report / "durations.png").read_bytes().startswith(b"\x89PNG")


def test_only_and_repeat_with_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _live_children()
    code = main(
        [
            "run",
            "suite",
            "--only",
            "think,ipc_pingpong",
            "--repeat",
            "2",
            "--json",
            "--out",
            str(tmp_path),
            "--llm",
            "fake",
        ]
    )
    doc = json.loads(capsys.readouterr().out)  # stdout is the JSON document and nothing else
    assert code == 0
    assert [(t["task"], t["repeat"]) for t in doc["tasks"]] == [
        ("ipc_pingpong", 1),
        ("think", 1),
        ("ipc_pingpong", 2),
        ("think", 2),
    ]
    assert doc["options"]["repeat"] == 2 and doc["report_dir"] == str(next(tmp_path.iterdir()))
    assert _live_children() - before == set()


def test_think_scheduler_backend_is_chosen_and_recorded(tmp_path: Path, capsys) -> None:
    """--scheduler model: THINK requests ordered by the golden model (sim/) through the entry point."""
    code = main(["run", "suite", "--only", "think", "--scheduler", "model", "--json", "--out", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["totals"]["passed"] == 1
    assert doc["environment"]["think_scheduler"] == "model"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--suite", "nope"], "unknown suite 'nope'; valid suites: smoke, faults"),
        (["--only", "think,bogus"], "unknown task(s) 'bogus' in suite 'smoke'; valid tasks: ipc_pingpong"),
        (["--only", ","], "unknown task(s) (none given)"),
        (["--repeat", "0"], "--repeat must be at least 1, got 0"),
        (["--timeout", "-1"], "--timeout must be a positive number of seconds"),
        (["--scheduler", "nosuch"], "unknown THINK scheduler backend 'nosuch'; valid: software, "),
        (["--scheduler", "rtl:depth"], "scheduler backend 'rtl': option 'depth' is not KEY=VALUE"),
        (["--scheduler", "software:x=1"], "scheduler backend 'software' takes no options"),
    ],
)
def test_bad_arguments_exit_2_naming_the_valid_choices(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "suite", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was started, nothing written


def test_gemini_without_a_key_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    assert main(["run", "suite", "--llm", "gemini", "--out", str(tmp_path)]) == 2
    assert "needs GEMINI_API_KEY" in capsys.readouterr().err


def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run", "suite", "--repeat", "many"])
    assert exc.value.code == 2
    assert "invalid int value" in capsys.readouterr().err


def test_list_names_every_suite_and_task(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "suite", "--list"]) == 0
    out = capsys.readouterr().out
    for suite in SUITES.values():
        assert suite.name in out
        assert all(name in out for name in suite.task_names())


def test_unusable_out_dir_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["run", "suite", "--only", "think", "--llm", "fake", "--out", str(blocker)]) == 1
    err = capsys.readouterr().err
    assert "error: the suite could not run: FileExistsError" in err and str(blocker) in err
