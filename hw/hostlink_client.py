"""The `fpga` scheduler backend: the board's scheduler over the UART host link (hw/linkproto.py frames).

Per tick it polls for a dispatch (ASYNC_POLL) when the consumer is ready, then offers the enqueue
(THINK). Queue lengths are tracked here so an enqueue is judged against the queue as it was at the
start of the tick, as sim/backends.py's convention says. The board's clock runs between commands, so
decisions equal the software's when quotas are off (bucket_rate 0); with quotas its buckets refill
in real time. Without a board (no such serial device) construction fails with a clear LinkError.
"""

from __future__ import annotations

import os
import termios
import time

from clove_gym.runtime.protocol import Op
from clove_gym.sim.backends import Tick, TickResult
from clove_gym.sim.params import HwParams

from .linkproto import LinkError, check, decode, encode
from .top import BAUD

BAUD_FLAG = {115_200: termios.B115200}


class FpgaBackend:
    name = "fpga"

    def __init__(self, params: HwParams, port: str = "/dev/ttyUSB1", timeout: float = 0.5) -> None:
        self.p = params.validate()
        self.timeout = timeout
        try:
            self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise LinkError(
                f"fpga backend: cannot open {port} ({e.strerror}); is the board attached?"
            ) from None
        attrs = termios.tcgetattr(self.fd)
        attrs[0] = attrs[1] = attrs[3] = 0  # raw: no input/output/local processing
        attrs[2] = termios.CS8 | termios.CREAD | termios.CLOCAL
        attrs[4] = attrs[5] = BAUD_FLAG[BAUD]
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 0, 1
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        self.pending = [0] * params.agents
        self.buf = b""
        self.call(Op.KILL, 0)  # reset the board's Core: both sides start from the reset state

    def call(self, opcode: int, agent: int, payload: bytes = b"") -> bytes:
        os.write(self.fd, encode(opcode, agent, payload))
        deadline = time.monotonic() + self.timeout
        while True:
            frame, used = decode(self.buf)
            self.buf = self.buf[used:]
            if frame is not None:
                return check(frame, opcode)
            if time.monotonic() > deadline:
                raise LinkError(f"no answer to opcode 0x{opcode:02X} within {self.timeout} s")
            self.buf += os.read(self.fd, 64)

    def tick(self, t: Tick) -> TickResult:
        full = t.enq is not None and self.pending[t.enq[0]] >= self.p.depth
        grant = None
        if t.ready:
            granted, agent = self.call(Op.ASYNC_POLL, 0)
            if granted:
                grant = agent
                self.pending[agent] -= 1
        accepted = False
        if t.enq is not None and not full:
            accepted = self.call(Op.THINK, t.enq[0], bytes([t.enq[1]]))[0] == 1
            self.pending[t.enq[0]] += accepted
        return TickResult(grant, accepted)

    def close(self) -> None:
        os.close(self.fd)
