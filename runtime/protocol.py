"""The Clove wire protocol: opcodes and the 17-byte frame codec (pure-Python twin of native/src/codec.c).

A frame is a little-endian header `<IIBQ>` (magic 0x41474E54, agent id, opcode, payload size)
followed by the payload. See ../shared/spec/protocol.md §1. The C codec must return exactly what
these functions return, for every input (tests/native prove it).
"""

from __future__ import annotations

import struct
from enum import IntEnum

MAGIC = 0x41474E54
HEADER = struct.Struct("<IIBQ")
HEADER_SIZE = HEADER.size  # 17
MAX_PAYLOAD = 1 << 20  # 1 MiB, enforced on frames the kernel receives; exactly 1 MiB is allowed

# split_frames() status codes
SPLIT_OK = 0  # stopped at the end of the buffer or at an incomplete frame
SPLIT_BAD_MAGIC = 1  # the header at `pos` has the wrong magic: close the connection
SPLIT_OVERSIZE = 2  # the header at `pos` announces more than max_payload: drain and answer an error


class Op(IntEnum):
    """Opcode values, identical to the Clove SDK's SyscallOp (without the SYS_ prefix)."""

    NOOP = 0x00
    THINK = 0x01
    EXEC = 0x02
    READ = 0x03
    WRITE = 0x04
    SPAWN = 0x10
    KILL = 0x11
    LIST = 0x12
    PAUSE = 0x14
    RESUME = 0x15
    SEND = 0x20
    RECV = 0x21
    BROADCAST = 0x22
    REGISTER = 0x23
    STORE = 0x30
    FETCH = 0x31
    DELETE = 0x32
    KEYS = 0x33
    GET_PERMS = 0x40
    SET_PERMS = 0x41
    HTTP = 0x50
    SUBSCRIBE = 0x60
    UNSUBSCRIBE = 0x61
    POLL_EVENTS = 0x62
    EMIT = 0x63
    RECORD_START = 0x70
    RECORD_STOP = 0x71
    RECORD_STATUS = 0x72
    REPLAY_START = 0x73
    REPLAY_STATUS = 0x74
    GET_AUDIT_LOG = 0x76
    SET_AUDIT_CONFIG = 0x77
    ASYNC_POLL = 0x80
    WORLD_CREATE = 0xA0
    WORLD_DESTROY = 0xA1
    WORLD_LIST = 0xA2
    WORLD_JOIN = 0xA3
    WORLD_LEAVE = 0xA4
    WORLD_EVENT = 0xA5
    WORLD_STATE = 0xA6
    WORLD_SNAPSHOT = 0xA7
    WORLD_RESTORE = 0xA8
    TUNNEL_CONNECT = 0xB0
    TUNNEL_DISCONNECT = 0xB1
    TUNNEL_STATUS = 0xB2
    TUNNEL_LIST_REMOTES = 0xB3
    TUNNEL_CONFIG = 0xB4
    METRICS_SYSTEM = 0xC0
    METRICS_AGENT = 0xC1
    METRICS_ALL_AGENTS = 0xC2
    METRICS_CGROUP = 0xC3
    LLM_REPORT = 0xF0
    HELLO = 0xFE
    EXIT = 0xFF


OPCODE_NAMES: dict[int, str] = {op.value: op.name for op in Op}


def opcode_name(opcode: int) -> str:
    """Name of an opcode, or `0xNN` for a value outside the table."""
    return OPCODE_NAMES.get(opcode, f"0x{opcode:02X}")


def encode_frame(agent_id: int, opcode: int, payload: bytes) -> bytes:
    """One frame: header + payload."""
    return HEADER.pack(MAGIC, agent_id, opcode, len(payload)) + payload


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int, int]:
    """(magic, agent_id, opcode, payload_size) of the header at `pos`; buf must hold 17 bytes there."""
    return HEADER.unpack_from(buf, pos)


def split_frames(
    buf: bytes | bytearray | memoryview, pos: int = 0, max_payload: int = MAX_PAYLOAD
) -> tuple[list[tuple[int, int, bytes]], int, int]:
    """Split the complete frames in buf[pos:].

    Returns (frames, pos, status): frames as (agent_id, opcode, payload) in order; pos is where parsing
    stopped (the first byte not consumed); status is SPLIT_OK, or SPLIT_BAD_MAGIC / SPLIT_OVERSIZE when
    the header at pos is bad (the frames before it are still returned).
    """
    frames: list[tuple[int, int, bytes]] = []
    end = len(buf)
    unpack = HEADER.unpack_from
    while end - pos >= HEADER_SIZE:
        magic, agent_id, opcode, size = unpack(buf, pos)
        if magic != MAGIC:
            return frames, pos, SPLIT_BAD_MAGIC
        if size > max_payload:
            return frames, pos, SPLIT_OVERSIZE
        stop = pos + HEADER_SIZE + size
        if stop > end:
            break
        frames.append((agent_id, opcode, bytes(buf[pos + HEADER_SIZE : stop])))
        pos = stop
    return frames, pos, SPLIT_OK
