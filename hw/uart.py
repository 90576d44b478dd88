"""8N1 UART receiver and transmitter with byte streams.

Written here because Amaranth 0.5 ships no UART and amaranth-stdio has no release on PyPI (only a
placeholder name); these two are the minimal fixed-divisor kind the host link needs.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class UartRx(wiring.Component):
    """`rx` pin in, `data` stream out (a byte that arrives while `data` is not taken is dropped)."""

    def __init__(self, divisor: int) -> None:
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor}: must be >= 4 (clock / baud)")
        self.divisor = divisor
        # frame_error pulses on a missing stop bit
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)), "frame_error": Out(1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        d = self.divisor
        sync_rx = Signal(2, init=0b11)
        m.d.sync += sync_rx.eq((sync_rx << 1) | self.rx)
        rx = sync_rx[1]
        timer = Signal(range(d * 3 // 2 + 1))
        bits = Signal(range(9))
        shreg = Signal(8)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += self.frame_error.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [timer.eq(d + d // 2 - 1), bits.eq(0)]  # to the middle of bit 0
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq((shreg >> 1) | (rx << 7)), bits.eq(bits + 1), timer.eq(d - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.data.payload.eq(shreg), self.data.valid.eq(1)]
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """`data` stream in, `tx` pin out."""

    def __init__(self, divisor: int) -> None:
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor}: must be >= 4 (clock / baud)")
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        shreg = Signal(11)  # start, 8 data bits, stop, then idle (ends the stop bit after a full bit time)
        left = Signal(range(12))
        m.d.comb += self.data.ready.eq(left == 0)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shreg.eq((self.data.payload << 1) | (0b11 << 9)), left.eq(11), timer.eq(0)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    self.tx.eq(shreg[0]),
                    shreg.eq(shreg >> 1),
                    left.eq(left - 1),
                    timer.eq(self.divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
