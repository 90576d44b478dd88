"""Trace reader: truncation at every byte, corruption of every byte, bad headers, strict vs lenient."""

from __future__ import annotations

import struct
import zlib

import pytest
from clove_gym.runtime.trace.format import FILE_HEADER_SIZE, RECORD, Kind
from clove_gym.runtime.trace.reader import TraceFormatError, iter_records, read_trace
from clove_gym.runtime.trace.writer import TraceWriter


def _small_trace(path) -> list[tuple[int, int]]:
    """Write a 5-record trace; return each record's (start, end) byte range."""
    with TraceWriter(path, cap=16, wall_ns=10**18, mono_ns=1000) as w:
        w.record(Kind.SYSCALL, 0x20, 1, 2000, aux=1, service_ns=50, req=b'{"to":2,"m":"hi"}', resp=b"{}")
        w.record(Kind.MSG_ENQUEUE, 0x20, 1, 2010, peer_id=2, aux=1, req=b'{"m":"hi"}')
        w.record(Kind.EVENT, 7, 2, 2020, req=b"{}")
        w.record(Kind.MSG_DEQUEUE, 0x21, 2, 2030, peer_id=1, aux=1)
        w.record(Kind.SYSCALL, 0x21, 2, 2040, aux=2, resp=b"x" * 40)
    data = path.read_bytes()
    bounds, off = [], FILE_HEADER_SIZE
    while off < len(data):
        end = off + RECORD.unpack_from(data, off)[0]
        bounds.append((off, end))
        off = end
    assert off == len(data) and len(bounds) == 5
    return bounds


def test_truncation_at_every_byte_offset(tmp_path):
    full = tmp_path / "full.clvtrace"
    bounds = _small_trace(full)
    data = full.read_bytes()
    reference = read_trace(full, strict=True).records
    cut_path = tmp_path / "cut.clvtrace"
    for cut in range(len(data)):
        cut_path.write_bytes(data[:cut])
        if cut < FILE_HEADER_SIZE:
            for strict in (False, True):
                with pytest.raises(TraceFormatError, match="file header at byte offset 0: truncated"):
                    read_trace(cut_path, strict=strict)
            continue
        whole = sum(1 for _, end in bounds if end <= cut)
        trace = read_trace(cut_path)
        assert trace.records == reference[:whole], cut
        boundary = FILE_HEADER_SIZE if whole == 0 else bounds[whole - 1][1]
        assert trace.ignored_bytes == cut - boundary
        if cut == boundary:
            assert trace.stop_reason is None
            assert read_trace(cut_path, strict=True).records == reference[:whole]
        else:
            assert f"record {whole} at byte offset {boundary}: truncated" in trace.stop_reason
            with pytest.raises(TraceFormatError, match=f"record {whole} at byte offset {boundary}") as exc:
                read_trace(cut_path, strict=True)
            assert str(cut_path) in str(exc.value)
            assert (exc.value.index, exc.value.offset) == (whole, boundary)


def test_corrupting_any_byte_of_a_record_stops_there(tmp_path):
    full = tmp_path / "full.clvtrace"
    bounds = _small_trace(full)
    data = full.read_bytes()
    reference = read_trace(full).records
    start, end = bounds[2]
    bad = tmp_path / "bad.clvtrace"
    for pos in range(start, end):
        mutated = bytearray(data)
        mutated[pos] ^= 0x5A
        bad.write_bytes(mutated)
        trace = read_trace(bad)
        assert trace.records == reference[:2], pos
        assert trace.ignored_bytes == len(data) - start
        assert f"record 2 at byte offset {start}" in trace.stop_reason
        with pytest.raises(TraceFormatError, match=f"record 2 at byte offset {start}"):
            read_trace(bad, strict=True)


def test_crc_mismatch_is_named(tmp_path):
    full = tmp_path / "full.clvtrace"
    bounds = _small_trace(full)
    mutated = bytearray(full.read_bytes())
    mutated[bounds[1][0] + 60] ^= 1  # first payload byte of record 1
    full.write_bytes(mutated)
    with pytest.raises(TraceFormatError, match="record 1 .*CRC mismatch"):
        read_trace(full, strict=True)


def test_impossible_lengths_and_unknown_kind(tmp_path):
    path = tmp_path / "t.clvtrace"
    _small_trace(path)
    base = path.read_bytes()
    path.write_bytes(base + bytes(200))  # zero-filled tail, as a crashed file system may leave
    trace = read_trace(path)
    assert (
        len(trace.records) == 5
        and "record 5" in trace.stop_reason
        and "impossible lengths" in trace.stop_reason
    )
    assert trace.ignored_bytes == 200
    # a well-formed record (valid CRC) with a kind the format does not define
    body = struct.pack("<QIIQIIIIIHHBBBB", 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0)
    path.write_bytes(base + struct.pack("<II", 60, zlib.crc32(body)) + body)
    with pytest.raises(TraceFormatError, match="record 5 .*unknown kind 9"):
        read_trace(path, strict=True)
    # stored bytes larger than the true size
    body = struct.pack("<QIIQIIIIIHHBBBB", 1, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0, 0) + b"ab"
    path.write_bytes(base + struct.pack("<II", 62, zlib.crc32(body)) + body)
    with pytest.raises(TraceFormatError, match="record 5 .*stored payload"):
        read_trace(path, strict=True)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"NOTATRAC" + struct.pack("<HHIqq", 1, 32, 0, 0, 0), "bad magic"),
        (b"CLVTRACE" + struct.pack("<HHIqq", 2, 32, 0, 0, 0), "unsupported version 2"),
        (b"CLVTRACE" + struct.pack("<HHIqq", 1, 16, 0, 0, 0), "impossible header_size 16"),
        (b"CLVTRACE" + struct.pack("<HHIqq", 1, 64, 0, 0, 0), "truncated file header"),
        (b"", "truncated file header"),
    ],
)
def test_bad_file_headers_fail_in_both_modes(tmp_path, header, message):
    path = tmp_path / "h.clvtrace"
    path.write_bytes(header)
    for strict in (False, True):
        with pytest.raises(TraceFormatError, match=f"{path}: file header at byte offset 0: {message}"):
            read_trace(path, strict=strict)
        with pytest.raises(TraceFormatError):
            list(iter_records(path, strict=strict))


def test_longer_header_is_skipped(tmp_path):
    """Readers skip to header_size, so a later version may grow the header."""
    path = tmp_path / "t.clvtrace"
    _small_trace(path)
    data = path.read_bytes()
    grown = data[:10] + struct.pack("<H", 40) + data[12:32] + b"\xee" * 8 + data[32:]
    path.write_bytes(grown)
    trace = read_trace(path, strict=True)
    assert len(trace.records) == 5 and trace.records[0].offset == 40
    assert (trace.version, trace.wall_ns, trace.mono_ns) == (1, 10**18, 1000)
    assert trace.wall_ns_of(2000) == 10**18 + 1000


def test_iter_records_streams_the_same_records(tmp_path):
    path = tmp_path / "t.clvtrace"
    bounds = _small_trace(path)
    assert list(iter_records(path)) == read_trace(path).records
    data = path.read_bytes()
    path.write_bytes(data[: bounds[3][0] + 7])
    it = iter_records(path, strict=True)
    assert [r.index for r in (next(it), next(it), next(it))] == [0, 1, 2]
    with pytest.raises(TraceFormatError, match="record 3"):
        next(it)
    assert [r.index for r in iter_records(path)] == [0, 1, 2]


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_trace(tmp_path / "nope.clvtrace")
