"""The C TraceRing against its twin (runtime/trace/writer.py TraceWriter): byte-identical files."""

from __future__ import annotations

import os
import time

import pytest
from clove_gym.native import _native as C
from clove_gym.runtime.trace.reader import read_trace
from clove_gym.runtime.trace.writer import TraceWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

big = st.one_of(
    st.integers(-5, 2**32 + 5),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 2**32 - 1, 2**64 - 1, 2**64]),
)
records = st.fixed_dictionaries(
    {"kind": st.integers(0, 3), "opcode": st.integers(0, 255), "agent_id": big, "t_ns": big},
    optional={
        "peer_id": big, "aux": big, "service_ns": big, "queue_ns": big, "world_id": big,
        "result": st.integers(0, 255), "req": st.binary(max_size=300), "resp": st.binary(max_size=300),
    },
)  # fmt: skip


def both(tmp_path, **kw):
    kw.setdefault("wall_ns", 11)
    kw.setdefault("mono_ns", 22)
    return TraceWriter(tmp_path / "py.clvtrace", **kw), C.TraceRing(tmp_path / "c.clvtrace", **kw)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(records, st.just("flush")), max_size=40),
    st.sampled_from([1, 59, 60, 61, 100, 256, 4096, 65536]),
    st.sampled_from([0, 1, 16, 256, 65535]),
)
def test_same_bytes_at_every_step(tmp_path, calls, buffer_size, cap):
    py, c = both(tmp_path, buffer_size=buffer_size, cap=cap)
    for call in calls:
        if call == "flush":
            py.flush()
            c.flush()
        else:
            py.record(**call)
            c.record(**call)
        # bytes_written moving in step shows the same buffering (one write per full buffer)
        assert (c.records, c.bytes_written) == (py.records, py.bytes_written)
    py.close()
    c.close()
    data = (tmp_path / "c.clvtrace").read_bytes()
    assert data == (tmp_path / "py.clvtrace").read_bytes()
    assert len(read_trace(tmp_path / "c.clvtrace", strict=True).records) == len(
        [x for x in calls if x != "flush"]
    )


def test_positional_arguments_and_reader_roundtrip(tmp_path):
    py, c = both(tmp_path, buffer_size=128, cap=4)
    for w in (py, c):
        w.record(0, 0x20, 7, 123, 8, 9, 10, 11, 12, 1, b"request", b"response")
        w.record(3, 0x21, 8, 2**64 + 1, peer_id=-1, aux=2**65, req=bytearray(b"xy"), resp=memoryview(b"z"))
        w.close()
        w.close()  # idempotent
    assert (tmp_path / "c.clvtrace").read_bytes() == (tmp_path / "py.clvtrace").read_bytes()
    trace = read_trace(tmp_path / "c.clvtrace", strict=True)
    assert (trace.wall_ns, trace.mono_ns) == (11, 22)
    first, second = trace.records
    assert (first.kind, first.opcode, first.agent_id, first.peer_id, first.aux) == (0, 0x20, 7, 8, 9)
    assert (first.req, first.req_size, first.resp, first.resp_size) == (b"requ", 7, b"resp", 8)
    assert (second.t_ns, second.peer_id, second.aux) == (2**64 - 1, 0, 2**64 - 1)


BAD_RECORDS = [
    {"kind": 4}, {"kind": -1}, {"kind": 1.5}, {"kind": 3.5}, {"kind": None}, {"kind": "0"},
    {"opcode": 256}, {"opcode": -1}, {"opcode": 255.5}, {"opcode": 2.0}, {"result": 256}, {"result": 1.0},
    {"agent_id": None}, {"agent_id": 1.5}, {"agent_id": -1.5}, {"agent_id": 1e20}, {"t_ns": "1"},
    {"aux": float("nan")}, {"req": "text"}, {"req": 5}, {"resp": None}, {"world_id": []},
]  # fmt: skip


@pytest.mark.parametrize("bad", BAD_RECORDS, ids=[repr(b) for b in BAD_RECORDS])
def test_bad_records_raise_like_the_twin(tmp_path, bad):
    base = {"kind": 0, "opcode": 1, "agent_id": 2, "t_ns": 3}
    outcomes = []
    for w in both(tmp_path):
        try:
            w.record(**{**base, **bad})
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001 - comparing exception types is the point
            outcomes.append(type(exc))
        w.close()
    assert outcomes[0] == outcomes[1]
    assert (tmp_path / "c.clvtrace").read_bytes() == (tmp_path / "py.clvtrace").read_bytes()


@pytest.mark.parametrize(
    "kw",
    [
        {"buffer_size": 0},
        {"buffer_size": -1},
        {"cap": -1},
        {"cap": 65536},
        {"wall_ns": 2**63},
        {"mono_ns": "x"},
    ],
)
def test_bad_constructor_arguments(tmp_path, kw):
    with pytest.raises(Exception) as py_err:
        TraceWriter(tmp_path / "a", **kw)
    with pytest.raises(Exception) as c_err:
        C.TraceRing(tmp_path / "b", **kw)
    assert type(c_err.value) is type(py_err.value)


def test_open_errors_and_closed_writer(tmp_path):
    for cls in (TraceWriter, C.TraceRing):
        with pytest.raises(FileNotFoundError):
            cls(tmp_path / "missing" / "t.clvtrace")
        with pytest.raises(TypeError):
            cls(None)
        w = cls(str(tmp_path / "t.clvtrace"))
        assert w.path == str(tmp_path / "t.clvtrace")
        w.close()
        with pytest.raises(ValueError):
            w.record(0, 0, 0, 0)


def test_fd_is_used_not_closed_and_default_header_uses_the_clocks(tmp_path):
    fd = os.open(tmp_path / "fd.clvtrace", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        before = time.monotonic_ns()
        with C.TraceRing(fd, cap=0) as ring:
            assert ring.path is None
            ring.record(1, 2, 3, 4, req=b"dropped by cap 0")
        after = time.monotonic_ns()
        os.fstat(fd)  # still open: the caller owns it
    finally:
        os.close(fd)
    trace = read_trace(tmp_path / "fd.clvtrace", strict=True)
    assert before <= trace.mono_ns <= after
    assert abs(trace.wall_ns - time.time_ns()) < 60 * 1_000_000_000
    assert trace.records[0].req == b"" and trace.records[0].req_size == 16


def test_unclosed_ring_flushes_when_collected(tmp_path):
    ring = C.TraceRing(tmp_path / "gc.clvtrace", wall_ns=0, mono_ns=0)
    ring.record(0, 0, 1, 2)
    del ring
    assert len(read_trace(tmp_path / "gc.clvtrace", strict=True).records) == 1
