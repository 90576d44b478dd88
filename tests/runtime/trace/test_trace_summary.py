"""Trace summary: every figure checked against a hand-built trace (nearest-rank percentiles)."""

from __future__ import annotations

import json

import pytest
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.reader import read_trace
from clove_gym.runtime.trace.summary import render, summarize
from clove_gym.runtime.trace.writer import TraceWriter
from rich.console import Console

BASE = 5_000_000_000
MS = 1_000_000


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    path = tmp_path_factory.mktemp("summary") / "t.clvtrace"
    with TraceWriter(path, wall_ns=1_700_000_000 * 10**9, mono_ns=BASE) as w:
        for i in range(200):  # 150 NOOP then 50 SEND, 1 ms apart, agents 1 and 2 alternating
            result = 2 if i == 199 else 1 if i % 30 == 0 else 0
            w.record(Kind.SYSCALL, 0x00 if i < 150 else 0x20, 1 + i % 2, BASE + i * MS, aux=i + 1,
                     service_ns=10 * (i + 1), queue_ns=i + 1, result=result,
                     req=b"x" * (i % 5), resp=b"y" * 1000 if i == 7 else b"")  # fmt: skip
        for seq, size in ((1, 10), (2, 20), (3, 300)):
            w.record(Kind.MSG_ENQUEUE, 0x20, 1, BASE + seq * MS, peer_id=2, aux=seq, req=b"m" * size)
        for seq in (1, 2):
            w.record(Kind.MSG_DEQUEUE, 0x21, 2, BASE + seq * MS + 1, peer_id=1, aux=seq, req=b"m")
        w.record(Kind.EVENT, 1, 3, BASE + 55 * MS, req=b'{"type":"AGENT_SPAWNED"}')
        w.record(Kind.EVENT, 11, 4, BASE + 250 * MS, req=b'{"type":"CUSTOM"}')
    return summarize(read_trace(path, strict=True))


def test_counts(summary):
    assert summary["file"]["records"] == 207 and summary["file"]["stop_reason"] is None
    assert summary["file"]["started"] == "2023-11-14T22:13:20+00:00"
    assert summary["kinds"] == {"SYSCALL": 200, "EVENT": 2, "MSG_ENQUEUE": 3, "MSG_DEQUEUE": 2}
    assert summary["results"] == {"OK": 192, "ERROR": 7, "PROTOCOL_ERROR": 1}
    assert summary["events"] == {"AGENT_SPAWNED": 1, "CUSTOM": 1}
    assert summary["messages"] == {"enqueued": 3, "dequeued": 2, "never_dequeued": 1}
    assert summary["agents"] == {
        "1": {"records": 103, "SYSCALL": 100, "EVENT": 0, "MSG_ENQUEUE": 3, "MSG_DEQUEUE": 0},
        "2": {"records": 102, "SYSCALL": 100, "EVENT": 0, "MSG_ENQUEUE": 0, "MSG_DEQUEUE": 2},
        "3": {"records": 1, "SYSCALL": 0, "EVENT": 1, "MSG_ENQUEUE": 0, "MSG_DEQUEUE": 0},
        "4": {"records": 1, "SYSCALL": 0, "EVENT": 1, "MSG_ENQUEUE": 0, "MSG_DEQUEUE": 0},
    }
    assert list(summary["syscalls"]) == ["NOOP", "SEND"]  # most frequent first
    assert summary["syscalls"]["NOOP"] == {
        "count": 150, "service_p50_ns": 750, "service_p99_ns": 1490, "service_max_ns": 1500
    }  # fmt: skip
    assert summary["syscalls"]["SEND"] == {
        "count": 50, "service_p50_ns": 1750, "service_p99_ns": 2000, "service_max_ns": 2000
    }  # fmt: skip


def test_latency_sizes_rate_concurrency(summary):
    assert summary["service_ns"] == {"p50": 1000, "p99": 1980, "p99.9": 2000, "max": 2000}
    assert summary["queue_ns"] == {"p50": 100, "p99": 198, "p99.9": 200, "max": 200}
    assert summary["sizes"] == {
        "request": {"p50": 2, "p99": 4, "max": 4},
        "response": {"p50": 0, "p99": 0, "max": 1000},
        "message": {"p50": 20, "p99": 300, "max": 300},
    }
    assert summary["duration_ns"] == 250 * MS
    assert summary["arrival_rate_per_s"] == pytest.approx(800.0)
    # windows 0..19: agents 1 and 2 (window 5 also agent 3); 20..24 empty; 25: agent 4
    assert summary["concurrency"] == {
        "window_ms": 10,
        "windows": 26,
        "mean": pytest.approx(42 / 26),
        "p50": 2,
        "max": 3,
    }
    json.dumps(summary)  # JSON-serialisable as is


def test_rich_rendering_shows_the_figures(summary):
    console = Console(record=True, width=140)
    console.print(render(summary))
    text = console.export_text()
    for needle in ("p99.9", "NOOP", "SEND", "AGENT_SPAWNED", "1000 ns", "1980 ns", "800 /s", "1000 B"):
        assert needle in text, needle


def test_empty_and_cut_traces(tmp_path):
    path = tmp_path / "e.clvtrace"
    TraceWriter(path).close()
    empty = summarize(read_trace(path))
    assert empty["file"]["records"] == 0 and empty["duration_ns"] == 0 and empty["arrival_rate_per_s"] is None
    assert empty["service_ns"] == {"p50": None, "p99": None, "p99.9": None, "max": None}
    assert empty["concurrency"]["windows"] == 0
    with TraceWriter(path) as w:
        w.record(0, 0, 1, 10, service_ns=5)
        w.record(0, 0, 1, 20, service_ns=7)
    path.write_bytes(path.read_bytes()[:-3])
    cut = summarize(read_trace(path))
    assert cut["file"]["records"] == 1 and "record 1" in cut["file"]["stop_reason"]
    console = Console(record=True, width=200)
    console.print(render(cut))
    assert "stopped early" in console.export_text()
