"""Trace summary: what ran, how often, how fast, how big, how concurrent (a dict, or rich tables).

Percentiles are nearest-rank (numpy's "inverted_cdf"): every reported value is one that occurred,
so a hand-built trace gives hand-checkable numbers. Latency and queue wait are over syscall records;
concurrency counts distinct agents with any record in each 10 ms window from the first record on.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import numpy as np
from clove_gym.runtime.trace.format import Kind, Result
from clove_gym.runtime.trace.reader import TraceFile
from rich.console import Console, Group
from rich.table import Table

WINDOW_NS = 10_000_000


def _quantiles(values: list[int], qs: tuple[tuple[str, float], ...]) -> dict[str, int | None]:
    if not values:
        return {name: None for name, _ in qs} | {"max": None}
    arr = np.asarray(values, dtype=np.int64)
    out: dict[str, int | None] = {name: int(np.percentile(arr, q, method="inverted_cdf")) for name, q in qs}
    out["max"] = int(arr.max())
    return out


_LATENCY_QS = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
_SIZE_QS = (("p50", 50.0), ("p99", 99.0))


def summarize(trace: TraceFile) -> dict[str, Any]:
    """The summary as a JSON-serialisable dict (see the module docstring for definitions)."""
    recs = trace.records
    syscalls = [r for r in recs if r.kind == Kind.SYSCALL]
    t = [r.t_ns for r in recs]
    t0 = min(t) if recs else 0
    duration_ns = max(t) - t0 if recs else 0
    by_opcode: dict[str, list[int]] = {}
    for r in syscalls:
        by_opcode.setdefault(r.name, []).append(r.service_ns)
    agents: dict[int, Counter[str]] = {}
    for r in recs:
        agents.setdefault(r.agent_id, Counter())[r.kind_name] += 1
    enqueued = {r.aux for r in recs if r.kind == Kind.MSG_ENQUEUE}
    dequeued = {r.aux for r in recs if r.kind == Kind.MSG_DEQUEUE}
    return {
        "file": {
            "version": trace.version,
            "started": dt.datetime.fromtimestamp(trace.wall_ns / 1e9, dt.UTC).isoformat(),
            "records": len(recs),
            "ignored_bytes": trace.ignored_bytes,
            "stop_reason": trace.stop_reason,
        },
        "duration_ns": duration_ns,
        "kinds": {k.name: sum(1 for r in recs if r.kind == k) for k in Kind},
        "syscalls": {
            name: {"count": len(v)} | {f"service_{k}_ns": q for k, q in _quantiles(v, _SIZE_QS).items()}
            for name, v in sorted(by_opcode.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        },
        "results": {res.name: sum(1 for r in syscalls if r.result == res) for res in Result},
        "events": dict(Counter(r.name for r in recs if r.kind == Kind.EVENT).most_common()),
        "messages": {
            "enqueued": sum(1 for r in recs if r.kind == Kind.MSG_ENQUEUE),
            "dequeued": sum(1 for r in recs if r.kind == Kind.MSG_DEQUEUE),
            "never_dequeued": len(enqueued - dequeued),
        },
        "agents": {
            str(agent): {"records": sum(c.values())} | {k.name: c[k.name] for k in Kind}
            for agent, c in sorted(agents.items())
        },
        "service_ns": _quantiles([r.service_ns for r in syscalls], _LATENCY_QS),
        "queue_ns": _quantiles([r.queue_ns for r in syscalls], _LATENCY_QS),
        "sizes": {
            "request": _quantiles([r.req_size for r in syscalls], _SIZE_QS),
            "response": _quantiles([r.resp_size for r in syscalls], _SIZE_QS),
            "message": _quantiles([r.req_size for r in recs if r.kind == Kind.MSG_ENQUEUE], _SIZE_QS),
        },
        "arrival_rate_per_s": len(syscalls) / (duration_ns / 1e9) if duration_ns else None,
        "concurrency": _concurrency(t0, [(r.t_ns, r.agent_id) for r in recs]),
    }


def _concurrency(t0: int, points: list[tuple[int, int]]) -> dict[str, Any]:
    """Distinct agents per WINDOW_NS window; windows without records count as 0."""
    if not points:
        return {"window_ms": WINDOW_NS // 1_000_000, "windows": 0, "mean": None, "p50": None, "max": None}
    active = {((ts - t0) // WINDOW_NS, agent) for ts, agent in points}
    windows = np.fromiter((w for w, _ in active), dtype=np.int64, count=len(active))
    per_window = np.bincount(windows, minlength=int(windows.max()) + 1)
    return {
        "window_ms": WINDOW_NS // 1_000_000,
        "windows": int(per_window.size),
        "mean": float(per_window.mean()),
        "p50": int(np.percentile(per_window, 50, method="inverted_cdf")),
        "max": int(per_window.max()),
    }


def _ns(value: int | None) -> str:
    if value is None:
        return "-"
    if value < 10_000:
        return f"{value} ns"
    if value < 10_000_000:
        return f"{value / 1e3:.1f} µs"
    return f"{value / 1e6:.1f} ms"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value} B"


def render(summary: dict[str, Any]) -> Group:
    """The summary as rich tables (overview, latency, sizes, syscalls, events, agents)."""
    f = summary["file"]
    overview = Table(title="trace", show_header=False)
    overview.add_row("started", f["started"])
    overview.add_row("records", str(f["records"]))
    overview.add_row("duration", _ns(summary["duration_ns"]))
    rate = summary["arrival_rate_per_s"]
    overview.add_row("syscall arrival rate", "-" if rate is None else f"{rate:,.0f} /s")
    overview.add_row("kinds", ", ".join(f"{k} {v}" for k, v in summary["kinds"].items()))
    overview.add_row("results", ", ".join(f"{k} {v}" for k, v in summary["results"].items()))
    m = summary["messages"]
    overview.add_row(
        "messages", f"{m['enqueued']} enqueued, {m['dequeued']} dequeued, {m['never_dequeued']} never"
    )
    c = summary["concurrency"]
    overview.add_row(
        f"agents active / {c['window_ms']} ms", f"mean {c['mean'] or 0:.2f}, p50 {c['p50']}, max {c['max']}"
    )
    if f["stop_reason"]:
        overview.add_row(
            "[red]stopped early[/red]", f"{f['stop_reason']} ({f['ignored_bytes']} bytes ignored)"
        )

    latency = Table(title="syscall latency")
    for col in ("", "p50", "p99", "p99.9", "max"):
        latency.add_column(col, justify="right")
    for key, label in (("service_ns", "service"), ("queue_ns", "queue wait")):
        q = summary[key]
        latency.add_row(label, *(_ns(q[k]) for k in ("p50", "p99", "p99.9", "max")))

    sizes = Table(title="payload sizes")
    for col in ("", "p50", "p99", "max"):
        sizes.add_column(col, justify="right")
    for label, q in summary["sizes"].items():
        sizes.add_row(label, *(_size(q[k]) for k in ("p50", "p99", "max")))

    ops = Table(title="syscalls by opcode")
    for col in ("opcode", "count", "service p50", "service p99"):
        ops.add_column(col, justify="right")
    for name, row in summary["syscalls"].items():
        ops.add_row(name, str(row["count"]), _ns(row["service_p50_ns"]), _ns(row["service_p99_ns"]))

    parts: list[Table] = [overview, latency, sizes, ops]
    if summary["events"]:
        events = Table(title="kernel events")
        events.add_column("event")
        events.add_column("count", justify="right")
        for name, n in summary["events"].items():
            events.add_row(name, str(n))
        parts.append(events)
    agents = Table(title="agents")
    for col in ("agent", "records", *(k.name for k in Kind)):
        agents.add_column(col, justify="right")
    for agent, row in summary["agents"].items():
        agents.add_row(agent, str(row["records"]), *(str(row[k.name]) for k in Kind))
    parts.append(agents)
    return Group(*parts)


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    """Print the rich tables to `console` (stdout by default)."""
    (console or Console()).print(render(summary))
