"""Host-link frames (sim/SPEC.md §5): the Python side of hw/hostlink.py, opcodes from runtime/protocol.

Frame: 0xA5, opcode, agent, len, payload[len], crc8 (CRC-8/SMBUS over opcode..payload). The RTL and
this module share the opcode table below; the CRC is Amaranth's own catalog implementation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from amaranth.lib.crc.catalog import CRC8_SMBUS
from clove_gym.runtime.protocol import Op

SYNC = 0xA5
ERROR = 0xEE
# opcode -> (request payload bytes, response payload bytes)
COMMANDS: dict[int, tuple[int, int]] = {
    Op.NOOP: (0, 4),  # status: frames ok (u16), bad frames (u16)
    Op.THINK: (1, 1),  # enqueue: cost -> accepted
    Op.SEND: (3, 1),  # dst, payload u16 -> accepted
    Op.RECV: (0, 4),  # -> got, src, payload u16
    Op.BROADCAST: (2, 1),  # payload u16 -> accepted
    Op.KILL: (0, 1),  # reset the Core: every queued request and message dropped -> 1
    Op.REPLAY_START: (0, 1),  # reset the Core and restart the on-chip replayer -> 1
    Op.REPLAY_STATUS: (0, 13),  # running, cycles u32, busy cycles u32, decisions u32
    Op.ASYNC_POLL: (0, 2),  # dispatch: -> granted, agent
}
ERR_CRC, ERR_LENGTH, ERR_OPCODE, ERR_ARG, ERR_TIMEOUT = 1, 2, 3, 4, 5
ERROR_NAMES = {ERR_CRC: "bad CRC", ERR_LENGTH: "wrong length", ERR_OPCODE: "unknown opcode",
               ERR_ARG: "bad argument", ERR_TIMEOUT: "inter-byte timeout"}  # fmt: skip

_crc = CRC8_SMBUS(data_width=8)


def crc8(data: bytes) -> int:
    return _crc.compute(data)


def encode(opcode: int, agent: int, payload: bytes = b"") -> bytes:
    """One frame."""
    if not (0 <= opcode <= 255 and 0 <= agent <= 255 and len(payload) <= 255):
        raise ValueError(f"frame fields out of range: opcode {opcode}, agent {agent}, {len(payload)} bytes")
    body = bytes([opcode, agent, len(payload)]) + payload
    return bytes([SYNC]) + body + bytes([crc8(body)])


class LinkError(RuntimeError):
    """The board answered with an error frame, or the response was malformed."""


@dataclass(frozen=True)
class Frame:
    opcode: int
    agent: int
    payload: bytes


def decode(buf: bytes) -> tuple[Frame | None, int]:
    """(first complete frame, bytes consumed) from a byte buffer; (None, skipped) if none is complete.

    Bytes before a SYNC are skipped; a frame with a bad CRC raises LinkError."""
    start = buf.find(bytes([SYNC]))
    if start < 0:
        return None, len(buf)
    if len(buf) - start < 5 or len(buf) - start < 5 + buf[start + 3]:
        return None, start
    n = buf[start + 3]
    body = buf[start + 1 : start + 4 + n]
    if crc8(body) != buf[start + 4 + n]:
        raise LinkError(f"response frame at byte {start}: bad CRC")
    return Frame(body[0], body[1], bytes(body[3:])), start + 5 + n


def check(frame: Frame, opcode: int) -> bytes:
    """The payload of the response to `opcode`, or LinkError for an error frame / wrong shape."""
    if frame.opcode == ERROR:
        code, op = frame.payload[0], frame.payload[1]
        raise LinkError(f"board refused opcode 0x{op:02X}: {ERROR_NAMES.get(code, f'error {code}')}")
    want = COMMANDS[opcode][1]
    if frame.opcode != opcode or len(frame.payload) != want:
        raise LinkError(
            f"response to 0x{opcode:02X}: got opcode 0x{frame.opcode:02X} with {len(frame.payload)} bytes"
        )
    return frame.payload


def replay_status(payload: bytes) -> dict[str, int]:
    running, cycles, busy, decisions = struct.unpack("<BIII", payload)
    return {"running": running, "cycles": cycles, "busy_cycles": busy, "decisions": decisions}
