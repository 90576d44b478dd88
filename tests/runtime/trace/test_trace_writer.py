"""TraceWriter: exact bytes, field clamping, payload cap, buffering and file/fd ownership."""

from __future__ import annotations

import os
import struct
import zlib

import pytest
from clove_gym.runtime.trace.format import FILE_HEADER_SIZE, RECORD, RECORD_SIZE, U32_MAX, Kind
from clove_gym.runtime.trace.reader import read_trace
from clove_gym.runtime.trace.writer import U64_MAX, TraceWriter, open_writer


def test_header_and_record_bytes_are_exact(tmp_path):
    path = tmp_path / "t.clvtrace"
    with TraceWriter(path, wall_ns=1_700_000_000_000_000_000, mono_ns=5_000) as w:
        w.record(Kind.SYSCALL, 0x20, 7, 6_000, peer_id=0, aux=1, service_ns=900, queue_ns=80,
                 world_id=3, result=1, req=b'{"to":3}', resp=b'{"ok":1}')  # fmt: skip
    data = path.read_bytes()
    assert data[:32] == b"CLVTRACE" + struct.pack("<HHIqq", 1, 32, 0, 1_700_000_000_000_000_000, 5_000)
    body = struct.pack("<QIIQIIIIIHHBBBB", 6_000, 7, 0, 1, 900, 80, 3, 8, 8, 8, 8, 0, 0x20, 1, 0)
    body += b'{"to":3}{"ok":1}'
    assert data[32:] == struct.pack("<II", RECORD_SIZE + 16, zlib.crc32(body)) + body
    assert w.bytes_written == len(data) and w.records == 1 and w.path == str(path)


def test_round_trip_every_kind(tmp_path):
    path = tmp_path / "t.clvtrace"
    rows = [
        dict(kind=Kind.SYSCALL, opcode=0x00, agent_id=1, t_ns=10, aux=1, service_ns=5, queue_ns=2, req=b"{}"),
        dict(kind=Kind.EVENT, opcode=1, agent_id=2, t_ns=11, req=b'{"type":"AGENT_SPAWNED"}'),
        dict(kind=Kind.MSG_ENQUEUE, opcode=0x20, agent_id=1, t_ns=12, peer_id=2, aux=9, req=b'{"m":1}'),
        dict(kind=Kind.MSG_DEQUEUE, opcode=0x21, agent_id=2, t_ns=13, peer_id=1, aux=9, req=b'{"m":1}'),
        dict(kind=Kind.SYSCALL, opcode=0xFF, agent_id=2, t_ns=14, world_id=42, result=2, resp=b"x" * 10),
    ]
    with TraceWriter(path) as w:
        for row in rows:
            w.record(**row)
    trace = read_trace(path, strict=True)
    assert trace.stop_reason is None and trace.ignored_bytes == 0
    assert len(trace.records) == len(rows)
    for i, (rec, row) in enumerate(zip(trace.records, rows, strict=True)):
        assert rec.index == i
        for key, value in row.items():
            assert getattr(rec, key) == value, key
        assert rec.req_size == len(row.get("req", b"")) and rec.resp_size == len(row.get("resp", b""))
    assert [r.name for r in trace.records] == ["NOOP", "AGENT_SPAWNED", "SEND", "RECV", "EXIT"]


def test_integer_fields_clamp_into_range(tmp_path):
    path = tmp_path / "t.clvtrace"
    with TraceWriter(path) as w:
        w.record(0, 1, U32_MAX + 5, U64_MAX + 1, peer_id=-3, aux=2**70, service_ns=2**40,
                 queue_ns=-1, world_id=2**33)  # fmt: skip
        w.record(0, 1, -1, -5, aux=-1)
    a, b = read_trace(path, strict=True).records
    assert (a.agent_id, a.t_ns, a.peer_id, a.aux) == (U32_MAX, U64_MAX, 0, U64_MAX)
    assert (a.service_ns, a.queue_ns, a.world_id) == (U32_MAX, 0, U32_MAX)
    assert (b.agent_id, b.t_ns, b.aux) == (0, 0, 0)


@pytest.mark.parametrize(
    ("field", "value"), [("kind", 4), ("kind", -1), ("opcode", 256), ("opcode", -1), ("result", 300)]
)
def test_byte_fields_out_of_range_are_rejected(tmp_path, field, value):
    with TraceWriter(tmp_path / "t.clvtrace") as w:
        args = dict(kind=0, opcode=0, agent_id=1, t_ns=1) | {field: value}
        with pytest.raises(ValueError, match=field):
            w.record(**args)
        assert w.records == 0


@pytest.mark.parametrize("cap", [0, 1, 4, 256])
def test_payload_cap_keeps_true_sizes(tmp_path, cap):
    path = tmp_path / "t.clvtrace"
    req, resp = bytes(range(200)) * 2, b"r" * 3
    with TraceWriter(path, cap=cap) as w:
        w.record(0, 0x30, 1, 1, req=req, resp=memoryview(resp))
    (rec,) = read_trace(path, strict=True).records
    assert rec.req == req[:cap] and rec.resp == resp[:cap]
    assert (rec.req_size, rec.resp_size) == (400, 3)
    assert os.path.getsize(path) == FILE_HEADER_SIZE + RECORD_SIZE + min(cap, 400) + min(cap, 3)


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="cap"):
        TraceWriter(tmp_path / "a", cap=70000)
    with pytest.raises(ValueError, match="buffer_size"):
        TraceWriter(tmp_path / "b", buffer_size=0)


def test_buffer_is_written_whole_when_the_next_record_does_not_fit(tmp_path):
    path = tmp_path / "t.clvtrace"
    w = TraceWriter(path, buffer_size=3 * RECORD_SIZE)
    assert w.bytes_written == FILE_HEADER_SIZE == os.path.getsize(path)  # header at open
    for i in range(3):
        w.record(0, 0, 1, i)
    assert w.bytes_written == FILE_HEADER_SIZE  # three records fit exactly: still buffered
    w.record(0, 0, 1, 3)  # does not fit: the three buffered ones go out in one write
    assert w.bytes_written == os.path.getsize(path) == FILE_HEADER_SIZE + 3 * RECORD_SIZE
    w.record(0, 0, 1, 4, req=b"x" * 200)  # bigger than the buffer: buffered one first, then it, directly
    assert w.bytes_written == os.path.getsize(path) == FILE_HEADER_SIZE + 5 * RECORD_SIZE + 200
    w.record(0, 0, 1, 5)
    w.flush()
    assert w.bytes_written == os.path.getsize(path) == FILE_HEADER_SIZE + 6 * RECORD_SIZE + 200
    w.close()
    assert [r.t_ns for r in read_trace(path, strict=True).records] == list(range(6))
    assert w.records == 6


def test_fd_is_used_but_not_closed(tmp_path):
    path = tmp_path / "t.clvtrace"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        with TraceWriter(fd) as w:
            w.record(1, 11, 2, 3)
        assert w.path is None
        os.fstat(fd)  # still open
    finally:
        os.close(fd)
    assert len(read_trace(path, strict=True).records) == 1


def test_close_is_idempotent_and_final(tmp_path):
    w = TraceWriter(tmp_path / "t.clvtrace")
    w.record(0, 0, 1, 1)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.record(0, 0, 1, 2)
    assert RECORD.unpack_from((tmp_path / "t.clvtrace").read_bytes(), FILE_HEADER_SIZE)[2] == 1


def test_open_writer_falls_back_to_the_twin(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOVE_GYM_NATIVE", "0")
    w = open_writer(tmp_path / "t.clvtrace", cap=8)
    assert isinstance(w, TraceWriter) and w.cap == 8
    w.close()


def test_open_writer_prefers_native_ring_when_built(tmp_path):
    from clove_gym.native import load

    native = load()
    if native is None or not hasattr(native, "TraceRing"):
        pytest.skip("native extension without TraceRing: only the Python twin is available here")
    path = tmp_path / "t.clvtrace"
    w = open_writer(path, cap=8)
    assert type(w) is native.TraceRing
    with w:
        w.record(0, 0x20, 1, 5, req=b"0123456789")
    (rec,) = read_trace(path, strict=True).records
    assert (rec.t_ns, rec.req, rec.req_size) == (5, b"01234567", 10)
