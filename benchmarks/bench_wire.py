"""A minimal blocking Clove-frame connection for load generators and fault tests.

Deliberately not the SDK client: it sends pre-encoded (pipelined) frames and reads replies in bulk, so the
Python on the client side costs little per frame and the kernel is what gets measured.
"""

from __future__ import annotations

import socket

from clove_gym.runtime.protocol import HEADER, HEADER_SIZE, MAGIC


class WireError(RuntimeError):
    """The peer closed the connection or sent something that is not a Clove frame."""


class FrameConn:
    """One Unix-socket connection speaking Clove frames."""

    def __init__(self, path: str, timeout: float | None = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = bytearray()
        # reads land in one kept buffer: a fresh 256 KiB bytes object per recv() is above glibc's mmap
        # threshold, an mmap, page faults and an munmap per reply, charged to the load generator
        self._chunk = bytearray(262144)
        self._view = memoryview(self._chunk)
        self.agent_id = 0  # the connection's identity, learnt from the first reply header
        self.reply_id = 0  # the agent id in the latest reply header (must always equal agent_id)

    def __enter__(self) -> FrameConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, need: int) -> None:
        while len(self._buf) < need:
            n = self.sock.recv_into(self._chunk)
            if not n:
                raise WireError(f"connection closed by the kernel ({len(self._buf)} of {need} bytes read)")
            self._buf += self._view[:n]

    def read_frame(self) -> tuple[int, bytes]:
        """The next reply as (opcode, payload)."""
        self._fill(HEADER_SIZE)
        magic, agent_id, opcode, size = HEADER.unpack_from(self._buf, 0)
        if magic != MAGIC:
            raise WireError(f"bad magic 0x{magic:08X} in a reply")
        self._fill(HEADER_SIZE + size)
        payload = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + size])
        del self._buf[: HEADER_SIZE + size]
        self.reply_id = agent_id
        self.agent_id = self.agent_id or agent_id
        return opcode, payload

    def read_frames(self, n: int) -> list[bytes]:
        """The payloads of the next `n` replies."""
        return [self.read_frame()[1] for _ in range(n)]

    def call(self, frame: bytes) -> tuple[int, bytes]:
        """Send one frame and read its reply."""
        self.send(frame)
        return self.read_frame()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """Whether the kernel closes this connection (EOF or reset) within `timeout`, ignoring replies."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True
