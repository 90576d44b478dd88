"""Trace reader: parses `.clvtrace` files (FORMAT.md), tolerating the torn tail a crash leaves.

Lenient mode (the default) stops at the first record that is truncated, fails its CRC or has
impossible lengths, and reports why and how many bytes it ignored: that is how a trace written by a
killed kernel is read back. Strict mode raises TraceFormatError instead. A bad or truncated file
header is an error in both modes (without it nothing in the file can be interpreted).
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from clove_gym.runtime.protocol import opcode_name
from clove_gym.runtime.trace.format import (
    EVENT_NAMES,
    FILE_HEADER,
    FILE_HEADER_SIZE,
    FILE_MAGIC,
    RECORD,
    RECORD_SIZE,
    VERSION,
    Kind,
)

_KIND_NAMES = {k.value: k.name for k in Kind}


class TraceFormatError(ValueError):
    """A trace file that cannot be read; the message names the file, record index and byte offset."""

    def __init__(self, path: str, index: int | None, offset: int, reason: str) -> None:
        where = "file header" if index is None else f"record {index}"
        super().__init__(f"{path}: {where} at byte offset {offset}: {reason}")
        self.path = path
        self.index = index
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Record:
    """One trace record; `req`/`resp` hold the stored (capped) payload bytes, the sizes are the true sizes."""

    kind: int
    opcode: int
    agent_id: int
    peer_id: int
    aux: int
    t_ns: int
    service_ns: int
    queue_ns: int
    world_id: int
    result: int
    req_size: int
    resp_size: int
    req: bytes
    resp: bytes
    offset: int
    index: int

    @property
    def kind_name(self) -> str:
        """SYSCALL, EVENT, MSG_ENQUEUE or MSG_DEQUEUE."""
        return _KIND_NAMES.get(self.kind, f"KIND_{self.kind}")

    @property
    def name(self) -> str:
        """The event name for EVENT records, else the opcode name."""
        if self.kind == Kind.EVENT:
            return EVENT_NAMES.get(self.opcode, f"EVENT_{self.opcode}")
        return opcode_name(self.opcode)


@dataclass(slots=True)
class TraceFile:
    """A whole trace: header fields, the records read, and why reading stopped early (if it did)."""

    version: int
    wall_ns: int
    mono_ns: int
    records: list[Record] = field(default_factory=list)
    ignored_bytes: int = 0
    stop_reason: str | None = None

    def wall_ns_of(self, t_ns: int) -> int:
        """Wall-clock ns (time.time_ns() scale) of a monotonic record time."""
        return self.wall_ns + (t_ns - self.mono_ns)


class _Scan:
    """Walks one file: the header at construction, then records; remembers why it stopped."""

    def __init__(self, path: str | os.PathLike[str], strict: bool) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self.stop_reason: str | None = None
        self.ignored_bytes = 0
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # mmap: records are sliced out lazily, so huge traces are not read into memory at once.
            self._data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.size = size
        if size < FILE_HEADER_SIZE:
            self._fail_header(f"truncated file header ({size} of {FILE_HEADER_SIZE} bytes)")
        magic, version, header_size, _flags, wall_ns, mono_ns = FILE_HEADER.unpack_from(self._data, 0)
        if magic != FILE_MAGIC:
            self._fail_header(f"bad magic {magic!r} (expected {FILE_MAGIC!r}): not a .clvtrace file")
        if version != VERSION:
            self._fail_header(f"unsupported version {version} (this reader knows {VERSION})")
        if header_size < FILE_HEADER_SIZE:
            self._fail_header(f"impossible header_size {header_size} (< {FILE_HEADER_SIZE})")
        if header_size > size:
            self._fail_header(f"truncated file header (header_size {header_size}, file has {size} bytes)")
        self.version, self.wall_ns, self.mono_ns, self.header_size = version, wall_ns, mono_ns, header_size

    def _fail_header(self, reason: str) -> None:
        self.close()
        raise TraceFormatError(self.path, None, 0, reason)

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def records(self) -> Iterator[Record]:
        data, size, unpack = self._data, self.size, RECORD.unpack_from
        off, index = self.header_size, 0
        try:
            while off < size:
                left = size - off
                if left < RECORD_SIZE:
                    self._stop(index, off, f"truncated record header ({left} of {RECORD_SIZE} bytes)")
                    return
                (rec_len, crc, t_ns, agent_id, peer_id, aux, service_ns, queue_ns, world_id, req_size,
                 resp_size, req_stored, resp_stored, kind, opcode, result, _flags) = unpack(data, off)  # fmt: skip
                reason = _length_problem(rec_len, req_size, resp_size, req_stored, resp_stored)
                if reason is not None:
                    self._stop(index, off, reason)
                    return
                if rec_len > left:
                    self._stop(index, off, f"truncated record ({left} of {rec_len} bytes)")
                    return
                body = data[off + 8 : off + rec_len]
                actual = zlib.crc32(body)
                if actual != crc:
                    self._stop(index, off, f"CRC mismatch (stored 0x{crc:08x}, computed 0x{actual:08x})")
                    return
                if kind not in _KIND_NAMES:
                    self._stop(index, off, f"unknown kind {kind}")
                    return
                payload = RECORD_SIZE - 8
                yield Record(
                    kind, opcode, agent_id, peer_id, aux, t_ns, service_ns, queue_ns, world_id, result,
                    req_size, resp_size, body[payload : payload + req_stored],
                    body[payload + req_stored :], off, index,
                )  # fmt: skip
                off += rec_len
                index += 1
        finally:
            self.close()

    def _stop(self, index: int, offset: int, reason: str) -> None:
        err = TraceFormatError(self.path, index, offset, reason)
        if self.strict:
            raise err
        self.stop_reason = str(err)
        self.ignored_bytes = self.size - offset


def _length_problem(
    rec_len: int, req_size: int, resp_size: int, req_stored: int, resp_stored: int
) -> str | None:
    if rec_len != RECORD_SIZE + req_stored + resp_stored:
        return (
            f"impossible lengths: rec_len {rec_len} != {RECORD_SIZE} + req_stored {req_stored}"
            f" + resp_stored {resp_stored}"
        )
    if req_stored > req_size or resp_stored > resp_size:
        return (
            f"impossible lengths: stored payload ({req_stored}, {resp_stored}) exceeds true size"
            f" ({req_size}, {resp_size})"
        )
    return None


def iter_records(path: str | os.PathLike[str], strict: bool = False) -> Iterator[Record]:
    """Yield the records of a trace one by one (lenient: stop quietly at the first bad record)."""
    scan = _Scan(path, strict)
    yield from scan.records()


def read_trace(path: str | os.PathLike[str], strict: bool = False) -> TraceFile:
    """Read a whole trace; in lenient mode `stop_reason`/`ignored_bytes` say where and why it stopped."""
    scan = _Scan(path, strict)
    records = list(scan.records())
    return TraceFile(scan.version, scan.wall_ns, scan.mono_ns, records, scan.ignored_bytes, scan.stop_reason)
