"""The report directory of a suite run: `<out>/<suite>-<UTC timestamp>/`.

It appears complete or not at all: everything (including the kernel's trace and audit log, written during
the run) goes into a hidden staging directory that is renamed into place at the end, and each file in it
is itself written to a temporary name and renamed, so an interrupted run leaves no half-written file.
"""

from __future__ import annotations

import html
import io
import json
import os
import platform
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from clove_gym.benchmarks.suite.metrics import add_trace_metrics
from clove_gym.benchmarks.suite.runner import AGENT_LOG_DIR, AUDIT_FILE, TRACE_FILE, SuiteRun
from clove_gym.benchmarks.suite.task import PASSED
from clove_gym.runtime.trace.reader import read_trace
from clove_gym.runtime.trace.summary import summarize
from matplotlib.figure import Figure

RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
SUMMARY_JSON = "trace-summary.json"
REPORT_HTML = "report.html"
DURATIONS_PNG = "durations.png"
LATENCY_PNG = "latency.png"
SCHEMA = 1


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temporary sibling, fsync, then rename over `path`."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ReportDir:
    """A staging directory under `out` that `commit()` renames to its final, unique name."""

    def __init__(self, out: Path, suite: str, started: datetime) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out = out
        self.name = f"{suite}-{started:%Y%m%dT%H%M%SZ}"
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.name}.", suffix=".partial", dir=out))

    def commit(self) -> Path:
        final = self.out / self.name
        n = 1
        while final.exists():  # two runs in the same second
            n += 1
            final = self.out / f"{self.name}-{n}"
        self.staging.chmod(0o755)
        os.rename(self.staging, final)
        return final

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def results_document(run: SuiteRun, report_dir: str) -> dict[str, Any]:
    """results.json: the run, its environment and one entry per task run."""
    passed = sum(r.status == PASSED for r in run.results)
    return {
        "schema": SCHEMA,
        "suite": run.suite.name,
        "status": "interrupted" if run.interrupted else ("passed" if run.passed else "failed"),
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "duration_s": round((run.finished - run.started).total_seconds(), 3) if run.finished else None,
        "report_dir": report_dir,
        "options": {
            "repeat": run.options.repeat,
            "timeout_s": run.options.timeout_s,
            "only": [t.name for t in run.tasks],
            "llm": run.llm,
        },
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "native_data_plane": run.native,
            "think_scheduler": run.scheduler,
            "llm": "fake Gemini endpoint (local)" if run.llm == "fake" else "Gemini API",
        },
        "totals": {"tasks": len(run.results), "passed": passed, "failed": len(run.results) - passed},
        "leftover_processes_killed": run.leftovers_killed,
        "tasks": [
            {
                "task": r.task,
                "repeat": r.repeat,
                "status": r.status,
                "passed": r.passed,
                "score": r.score,
                "reason": r.reason,
                "duration_s": r.duration_s,
                "metrics": r.metrics,
                "agents": r.agents,
                "killed_by_runner": r.killed,
                "report": r.report,
            }
            for r in run.results
        ],
    }


def results_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per task run, metrics flattened into `metrics.<name>` columns."""
    rows = [
        {k: v for k, v in t.items() if k not in ("report", "agents", "killed_by_runner")}
        | {"agents": len(t["agents"]), "killed_by_runner": len(t["killed_by_runner"])}
        for t in doc["tasks"]
    ]
    return pd.json_normalize(rows) if rows else pd.DataFrame(columns=["task", "repeat", "status"])


def write_report(run: SuiteRun, report: ReportDir) -> Path:
    """Fill the staging directory (results, trace summary, plots, HTML) and commit it; returns its path."""
    staging = report.staging
    trace_path = staging / TRACE_FILE
    summary: dict[str, Any] | None = None
    if trace_path.exists():
        trace = read_trace(trace_path)
        add_trace_metrics(trace, run.results)
        summary = summarize(trace)
        write_atomic(staging / SUMMARY_JSON, json.dumps(summary, indent=2))
    _drop_empty_logs(staging / AGENT_LOG_DIR)
    final_name = report.out / report.name
    doc = results_document(run, str(final_name))
    frame = results_frame(doc)
    write_atomic(staging / RESULTS_CSV, frame.to_csv(index=False))
    plots = _plots(frame)
    for name, png in plots.items():
        write_atomic(staging / name, png)
    write_atomic(staging / REPORT_HTML, _html(doc, frame, summary, list(plots)))
    write_atomic(staging / RESULTS_JSON, json.dumps(doc, indent=2, default=str))
    final = report.commit()
    if final != final_name:  # renamed to avoid a clash: results.json must name where it really is
        doc["report_dir"] = str(final)
        write_atomic(final / RESULTS_JSON, json.dumps(doc, indent=2, default=str))
    return final


def _drop_empty_logs(log_dir: Path) -> None:
    if not log_dir.is_dir():
        return
    for log in log_dir.iterdir():
        if log.stat().st_size == 0:
            log.unlink()
    if not any(log_dir.iterdir()):
        log_dir.rmdir()


def _label(row: pd.Series) -> str:
    return f"{row['task']} #{row['repeat']}" if row["repeat"] > 1 else str(row["task"])


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _plots(frame: pd.DataFrame) -> dict[str, bytes]:
    """Duration per task run (coloured by status) and the kernel's service latency per task (trace)."""
    if frame.empty:
        return {}
    labels = [_label(row) for _, row in frame.iterrows()]
    out: dict[str, bytes] = {}
    fig = Figure(figsize=(8, 0.45 * len(frame) + 1.2))
    ax = fig.subplots()
    colours = ["#2e7d32" if s == PASSED else "#c62828" for s in frame["status"]]
    ax.barh(labels, frame["duration_s"], color=colours)
    ax.invert_yaxis()
    ax.set_xlabel("duration (s), spawn of the driver to its result")
    ax.set_title("task durations (green: passed, red: not passed)")
    out[DURATIONS_PNG] = _png(fig)
    cols = [c for c in ("metrics.service_p50_us", "metrics.service_p99_us") if c in frame]
    if cols and frame[cols].notna().any().any():
        fig = Figure(figsize=(8, 0.45 * len(frame) + 1.2))
        ax = fig.subplots()
        height = 0.4
        ys = range(len(frame))
        for i, col in enumerate(cols):
            ax.barh(
                [y + i * height for y in ys], frame[col].fillna(0), height=height, label=col.split("_")[1]
            )
        ax.set_yticks([y + height / 2 for y in ys], labels)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("kernel service time per syscall (µs, log scale; from the trace)")
        ax.set_title("syscall latency percentiles per task")
        ax.legend()
        out[LATENCY_PNG] = _png(fig)
    return out


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.passed{color:#2e7d32;font-weight:bold}.failed,.interrupted{color:#c62828;font-weight:bold}"""


def _html(doc: dict[str, Any], frame: pd.DataFrame, summary: dict[str, Any] | None, plots: list[str]) -> str:
    e = html.escape
    env = doc["environment"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>clove-gym suite {e(doc['suite'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Suite <code>{e(doc['suite'])}</code>: <span class='{e(doc['status'])}'>{e(doc['status'])}</span></h1>",
        f"<p>{doc['totals']['passed']}/{doc['totals']['tasks']} task runs passed; started {e(doc['started'])},"
        f" {doc['duration_s']} s. Python {e(env['python'])} on {e(env['platform'])}, {env['cpus']} CPUs;"
        f" C data plane: {env['native_data_plane']}; THINK via {e(env['llm'])},"
        f" scheduled by the {e(env['think_scheduler'])} backend.</p>",
        "<h2>Results</h2>",
        frame.to_html(index=False, na_rep="", escape=True),
    ]
    parts += [
        f"<h2>{e(name.removesuffix('.png'))}</h2><img src='{e(name)}' alt='{e(name)}'>" for name in plots
    ]
    if summary is not None:
        ops = pd.DataFrame.from_dict(summary["syscalls"], orient="index")
        parts += [
            "<h2>Workload trace</h2>",
            f"<p>{summary['file']['records']} records over {summary['duration_ns'] / 1e9:.2f} s;"
            f" messages {summary['messages']['enqueued']} enqueued / {summary['messages']['dequeued']} dequeued;"
            f" kernel events {e(json.dumps(summary['events']))}.</p>",
            ops.to_html(escape=True),
        ]
    parts.append(
        "<h2>Files</h2><ul>"
        + "".join(
            f"<li><a href='{n}'>{n}</a></li>"
            for n in (RESULTS_JSON, RESULTS_CSV, TRACE_FILE, SUMMARY_JSON, AUDIT_FILE)
        )
        + "</ul></body></html>"
    )
    return "\n".join(parts)
