"""Exports: Parquet reads back row for row; Perfetto JSON has the tracks, slices and SEND→RECV flows."""

from __future__ import annotations

import dataclasses
import json
import os

import pyarrow.parquet as pq
import pytest
from clove_gym.runtime.trace.export import write_parquet, write_perfetto
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.reader import read_trace
from clove_gym.runtime.trace.writer import TraceWriter

MONO = 1_000_000


@pytest.fixture
def trace(tmp_path):
    """Agent 1 SENDs to 2 (seq 1) and BROADCASTs to 2 and 3 (seq 2, one enqueue per receiver); 2 and 3 RECV."""
    path = tmp_path / "t.clvtrace"
    with TraceWriter(path, wall_ns=1_700_000_000 * 10**9, mono_ns=MONO) as w:
        w.record(Kind.EVENT, 1, 1, MONO + 100, req=b'{"type":"AGENT_SPAWNED"}')
        w.record(Kind.MSG_ENQUEUE, 0x20, 1, MONO + 1_500, peer_id=2, aux=1, req=b'{"m":"a"}')
        w.record(Kind.SYSCALL, 0x20, 1, MONO + 1_000, aux=1, queue_ns=200, service_ns=800, req=b'{"to":2}',
                 resp=b'{"success":true}')  # fmt: skip
        w.record(Kind.MSG_ENQUEUE, 0x22, 1, MONO + 3_100, peer_id=2, aux=2, req=b'{"m":"b"}')
        w.record(Kind.MSG_ENQUEUE, 0x22, 1, MONO + 3_200, peer_id=3, aux=2, req=b'{"m":"b"}')
        w.record(Kind.SYSCALL, 0x22, 1, MONO + 3_000, aux=2, service_ns=500, req=b"\xff\xfe not utf-8")
        w.record(Kind.MSG_DEQUEUE, 0x21, 3, MONO + 5_500, peer_id=1, aux=2, req=b'{"m":"b"}')
        w.record(Kind.SYSCALL, 0x21, 3, MONO + 5_000, aux=3, service_ns=1_000, result=1, resp=b"{}")
        w.record(Kind.MSG_DEQUEUE, 0x21, 2, MONO + 6_500, peer_id=1, aux=1, req=b'{"m":"a"}')
        w.record(Kind.MSG_DEQUEUE, 0x21, 2, MONO + 6_600, peer_id=1, aux=2, req=b'{"m":"b"}')
        w.record(Kind.SYSCALL, 0x21, 2, MONO + 6_000, aux=4, service_ns=1_000, resp=b"{}")
        w.record(Kind.MSG_ENQUEUE, 0x20, 2, MONO + 7_000, peer_id=9, aux=3, req=b"{}")  # never received
    return read_trace(path, strict=True)


def test_parquet_reads_back_the_same_rows(trace, tmp_path):
    out = tmp_path / "t.parquet"
    write_parquet(trace, out)
    table = pq.read_table(out)
    assert table.num_rows == len(trace.records)
    rows = table.to_pylist()
    for rec, row in zip(trace.records, rows, strict=True):
        for field in dataclasses.fields(rec):
            assert row[field.name] == getattr(rec, field.name), field.name
        assert row["name"] == rec.name and row["kind_name"] == rec.kind_name
        assert row["wall_ns"] == trace.wall_ns_of(rec.t_ns)
        assert row["wall_time"].timestamp() == pytest.approx(row["wall_ns"] / 1e9)
    assert rows[0]["event_name"] == "AGENT_SPAWNED" and rows[0]["opcode_name"] is None
    assert rows[2]["opcode_name"] == "SEND" and rows[2]["event_name"] is None
    assert rows[7]["result_name"] == "ERROR"
    meta = json.loads(table.schema.metadata[b"clvtrace"])
    assert meta == {"version": 1, "wall_ns": trace.wall_ns, "mono_ns": MONO, "records": 12,
                    "ignored_bytes": 0, "stop_reason": None}  # fmt: skip


def _load(trace, tmp_path):
    out = tmp_path / "t.json"
    write_perfetto(trace, out)
    doc = json.loads(out.read_text())
    assert doc["displayTimeUnit"] == "ns" and doc["otherData"]["records"] == len(trace.records)
    return doc["traceEvents"]


def test_perfetto_tracks_slices_and_instants(trace, tmp_path):
    events = _load(trace, tmp_path)
    for ev in events:
        assert ev["pid"] == 1 and isinstance(ev["tid"], int) and ev["ph"] in "MXisf"
        if ev["ph"] != "M":
            assert isinstance(ev["ts"], float | int) and ev["ts"] >= 0
    names = {
        ev["tid"]: ev["args"]["name"] for ev in events if ev["ph"] == "M" and ev["name"] == "thread_name"
    }
    assert names == {1: "agent 1", 2: "agent 2", 3: "agent 3"}
    syscalls = [ev for ev in events if ev.get("cat") == "syscall"]
    assert [(e["name"], e["tid"], e["ts"], e["dur"]) for e in syscalls] == [
        ("SEND", 1, 1.2, 0.8), ("BROADCAST", 1, 3.0, 0.5), ("RECV", 3, 5.0, 1.0), ("RECV", 2, 6.0, 1.0)
    ]  # fmt: skip
    assert syscalls[0]["args"]["req"] == '{"to":2}' and syscalls[2]["args"]["result"] == "ERROR"
    assert syscalls[1]["args"]["req"].endswith("not utf-8")
    (instant,) = [ev for ev in events if ev["ph"] == "i"]
    assert (instant["name"], instant["s"], instant["tid"], instant["ts"]) == ("AGENT_SPAWNED", "t", 1, 0.1)


def test_perfetto_flow_arrows_join_enqueue_to_dequeue(trace, tmp_path):
    events = _load(trace, tmp_path)
    flows: dict[int, dict[str, dict]] = {}
    for ev in events:
        if ev["ph"] in "sf":
            assert ev["bp"] == "e" and ev["cat"] == "msg"
            assert ev["ph"] not in flows.setdefault(ev["id"], {}), "one start and one end per flow"
            flows[ev["id"]][ev["ph"]] = ev
    slices = [ev for ev in events if ev["ph"] == "X"]

    def enclosing(ev):
        """The innermost slice open on the flow event's track at its time (Perfetto's binding rule)."""
        open_ = [s for s in slices if s["tid"] == ev["tid"] and s["ts"] <= ev["ts"] < s["ts"] + s["dur"]]
        assert open_, f"no slice encloses {ev}"
        return max(open_, key=lambda s: s["ts"])

    pairs = sorted((enclosing(f["s"])["name"], enclosing(f["f"])["name"]) for f in flows.values())
    assert pairs == [
        ("enqueue #1 → agent 2", "dequeue #1 ← agent 1"),
        ("enqueue #2 → agent 2", "dequeue #2 ← agent 1"),
        ("enqueue #2 → agent 3", "dequeue #2 ← agent 1"),
    ]
    for f in flows.values():
        assert f["s"]["ts"] <= f["f"]["ts"]
        assert (f["s"]["tid"], f["f"]["tid"]) in {(1, 2), (1, 3)}
    # the message slice of the first SEND lies inside the SEND syscall slice, so the arrow leaves SEND
    send = next(s for s in slices if s["name"] == "SEND")
    msg = next(s for s in slices if s["name"] == "enqueue #1 → agent 2")
    assert send["ts"] <= msg["ts"] and msg["ts"] + msg["dur"] <= send["ts"] + send["dur"]


def test_failed_export_leaves_the_old_output_and_no_temp_file(trace, tmp_path):
    out = tmp_path / "t.json"
    out.write_text("previous result")
    broken = dataclasses.replace(
        trace, records=[*trace.records[:-1], dataclasses.replace(trace.records[-1], req=None)]
    )
    with pytest.raises(TypeError):
        write_perfetto(broken, out)
    assert out.read_text() == "previous result"
    assert sorted(os.listdir(tmp_path)) == ["t.clvtrace", "t.json"]
    write_perfetto(trace, out)
    assert json.loads(out.read_text())["traceEvents"] and oct(out.stat().st_mode & 0o777) == "0o644"
