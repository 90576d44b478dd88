"""Constants and structs of the `.clvtrace` format (FORMAT.md is the normative description)."""

from __future__ import annotations

import struct
from enum import IntEnum

FILE_MAGIC = b"CLVTRACE"
VERSION = 1
FILE_HEADER = struct.Struct("<8sHHIqq")  # magic, version, header_size, flags, wall_ns, mono_ns
FILE_HEADER_SIZE = FILE_HEADER.size  # 32
RECORD = struct.Struct("<IIQIIQIIIIIHHBBBB")
RECORD_SIZE = RECORD.size  # 60
DEFAULT_CAP = 256  # payload bytes stored per side
U32_MAX = 0xFFFFFFFF


class Kind(IntEnum):
    SYSCALL = 0
    EVENT = 1
    MSG_ENQUEUE = 2
    MSG_DEQUEUE = 3


class Result(IntEnum):
    OK = 0
    ERROR = 1
    PROTOCOL_ERROR = 2


EVENT_CODES: dict[str, int] = {
    "AGENT_SPAWNED": 1,
    "AGENT_EXITED": 2,
    "AGENT_PAUSED": 3,
    "AGENT_RESUMED": 4,
    "AGENT_RESTARTING": 5,
    "AGENT_ESCALATED": 6,
    "MESSAGE_RECEIVED": 7,
    "STATE_CHANGED": 8,
    "SYSCALL_BLOCKED": 9,
    "RESOURCE_WARNING": 10,
    "CUSTOM": 11,
}
EVENT_NAMES: dict[int, str] = {v: k for k, v in EVENT_CODES.items()}
