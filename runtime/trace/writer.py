"""Trace writer: the pure-Python twin of the C `TraceRing` (native/); both must write the same bytes.

Records go into an in-memory buffer that reaches the file in one write(2) when the next record would
not fit, on flush() and on close(): a crash loses at most the unflushed buffer, and because every
record is whole and CRC-checked the file stays readable (FORMAT.md, "Writing and crash safety").

Behaviour the C twin matches:
- the 32-byte file header is written at open, immediately (not buffered);
- kind must be 0..3, opcode and result 0..255 (ValueError otherwise);
- every other integer field clamps into its range: u32 fields (agent_id, peer_id, service_ns,
  queue_ns, world_id) into [0, 2**32-1], u64 fields (t_ns, aux) into [0, 2**64-1];
- req/resp are bytes-like; the first `cap` bytes of each are stored, their true lengths are the sizes
  (clamped to u32);
- a record longer than buffer_size bypasses the buffer (buffered bytes are written first, then it);
- an int `path_or_fd` is written to but not closed (the caller owns it); `path` is then None.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from types import TracebackType
from typing import Any

from clove_gym.runtime.trace.format import (
    DEFAULT_CAP,
    FILE_HEADER,
    FILE_HEADER_SIZE,
    FILE_MAGIC,
    RECORD_SIZE,
    U32_MAX,
    VERSION,
    Kind,
)

U64_MAX = 0xFFFFFFFFFFFFFFFF
U16_MAX = 0xFFFF
# The record header split where the CRC sits: (rec_len, crc32) then the CRC-covered fields.
_PREFIX = struct.Struct("<II")
_COVERED = struct.Struct("<QIIQIIIIIHHBBBB")
_NUM_KINDS = len(Kind)


def _u32(value: int) -> int:
    return 0 if value < 0 else U32_MAX if value > U32_MAX else value


def _u64(value: int) -> int:
    return 0 if value < 0 else U64_MAX if value > U64_MAX else value


class TraceWriter:
    """Appends `.clvtrace` records to a file through an in-memory buffer."""

    def __init__(
        self,
        path_or_fd: str | os.PathLike[str] | int,
        buffer_size: int = 65536,
        cap: int = DEFAULT_CAP,
        wall_ns: int | None = None,
        mono_ns: int | None = None,
    ) -> None:
        if buffer_size <= 0:
            raise ValueError(f"buffer_size must be > 0, got {buffer_size}")
        if not 0 <= cap <= U16_MAX:
            raise ValueError(f"cap must be in 0..{U16_MAX}, got {cap}")
        self.buffer_size = buffer_size
        self.cap = cap
        self.records = 0
        self.bytes_written = 0
        self._buf = bytearray()
        self._closed = False
        if isinstance(path_or_fd, int):
            self.path: str | None = None
            self._fd = path_or_fd
            self._owns_fd = False
        else:
            self.path = os.fspath(path_or_fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            self._owns_fd = True
        wall = time.time_ns() if wall_ns is None else wall_ns
        mono = time.monotonic_ns() if mono_ns is None else mono_ns
        self._write(FILE_HEADER.pack(FILE_MAGIC, VERSION, FILE_HEADER_SIZE, 0, wall, mono))

    def record(
        self,
        kind: int,
        opcode: int,
        agent_id: int,
        t_ns: int,
        peer_id: int = 0,
        aux: int = 0,
        service_ns: int = 0,
        queue_ns: int = 0,
        world_id: int = 0,
        result: int = 0,
        req: bytes = b"",
        resp: bytes = b"",
    ) -> None:
        """Append one record (see FORMAT.md for the fields)."""
        if self._closed:
            raise ValueError("trace writer is closed")
        if not 0 <= kind < _NUM_KINDS:
            raise ValueError(f"kind must be in 0..{_NUM_KINDS - 1}, got {kind}")
        if not 0 <= opcode <= 0xFF:
            raise ValueError(f"opcode must be in 0..255, got {opcode}")
        if not 0 <= result <= 0xFF:
            raise ValueError(f"result must be in 0..255, got {result}")
        req_size, resp_size = len(req), len(resp)
        req_stored = bytes(req[: self.cap])
        resp_stored = bytes(resp[: self.cap])
        covered = _COVERED.pack(
            _u64(t_ns),
            _u32(agent_id),
            _u32(peer_id),
            _u64(aux),
            _u32(service_ns),
            _u32(queue_ns),
            _u32(world_id),
            _u32(req_size),
            _u32(resp_size),
            len(req_stored),
            len(resp_stored),
            kind,
            opcode,
            result,
            0,
        )
        rec_len = RECORD_SIZE + len(req_stored) + len(resp_stored)
        crc = zlib.crc32(resp_stored, zlib.crc32(req_stored, zlib.crc32(covered)))
        rec = b"".join((_PREFIX.pack(rec_len, crc), covered, req_stored, resp_stored))
        if len(self._buf) + rec_len > self.buffer_size:
            self.flush()
        if rec_len > self.buffer_size:
            self._write(rec)
        else:
            self._buf += rec
        self.records += 1

    def flush(self) -> None:
        """Write the buffered records to the file (one write)."""
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._write(data)

    def close(self) -> None:
        """Flush, then close the file if this writer opened it. Idempotent."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._owns_fd:
                os.close(self._fd)

    def _write(self, data: bytes) -> None:
        # os.write may write less than asked (pipes, signals): loop until everything is out.
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self.bytes_written += n
            view = view[n:]

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_writer(path: str | os.PathLike[str] | int, **kw: Any) -> Any:
    """The C `TraceRing` when the native extension provides it, else the Python `TraceWriter`."""
    from clove_gym.native import load

    native = load()
    if native is not None and hasattr(native, "TraceRing"):
        return native.TraceRing(path, **kw)
    return TraceWriter(path, **kw)
