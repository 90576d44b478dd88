"""Board-independent top: Core + UART host link + on-chip replayer, and the per-board platforms.

The replayer runs once after configuration (and again on REPLAY_START); the host link owns the
Core's ports whenever the replayer is idle. LEDs show `busy` and `replay done`.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import wiring
from clove_gym.sim.params import HwParams

from .core import Core
from .hostlink import HostLink
from .replayer import Replayer
from .uart import UartRx, UartTx

BAUD = 115_200


class SystemTop(wiring.Component):
    """Pins: `rx` in, `tx` out, `leds` out (2). `clk_hz` sizes the UART divisor and the link timeout."""

    def __init__(self, params: HwParams, clk_hz: float, rom: list[dict], baud: int = BAUD) -> None:
        self.p = params.validate()
        self.clk_hz, self.baud, self.rom = clk_hz, baud, rom
        super().__init__({"rx": wiring.In(1, init=1), "tx": wiring.Out(1), "leds": wiring.Out(2)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        divisor = round(self.clk_hz / self.baud)
        core = Core(self.p)
        start, clear = Signal(), Signal()
        m.submodules.core = ResetInserter(clear)(core)  # a replay (or KILL) starts from the reset state
        m.submodules.link = link = HostLink(self.p, timeout_cycles=int(self.clk_hz / 1000))  # 1 ms
        m.submodules.replayer = rep = Replayer(self.p, self.rom)
        m.submodules.urx = urx = UartRx(divisor)
        m.submodules.utx = utx = UartTx(divisor)
        wiring.connect(m, urx.data, link.rx)
        wiring.connect(m, link.tx, utx.data)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]

        boot = Signal(init=1)  # start the replayer once after configuration
        m.d.sync += boot.eq(0)
        m.d.comb += [start.eq(boot | link.replay_start), rep.start.eq(start)]
        m.d.comb += clear.eq(start | link.core_reset)
        r = rep.running
        # every Core input comes from a register: the replayer's ROM/FIFO and the link's decoding stay
        # off the Core's paths (both sources account for the one-cycle delay)
        for name in ("enq", "send", "recv"):
            src_rep, src_link, dst = getattr(rep, name), getattr(link, name), getattr(core, name)
            m.d.sync += [
                dst.valid.eq(Mux(r, src_rep.valid, src_link.valid)),
                dst.payload.eq(Mux(r, src_rep.payload, Value.cast(src_link.payload))),
            ]
            m.d.comb += [src_rep.ready.eq(dst.ready & r), src_link.ready.eq(dst.ready & ~r)]
        m.d.comb += [
            core.disp.ready.eq(Mux(r, rep.disp.ready, link.disp.ready)),
            rep.disp.valid.eq(core.disp.valid), rep.disp.payload.eq(core.disp.payload),
            link.disp.valid.eq(core.disp.valid), link.disp.payload.eq(core.disp.payload),
            rep.busy.eq(core.busy),
            link.rdata.eq(core.rdata), link.rdata_valid.eq(core.rdata_valid),
            link.replay_status.eq(Cat(r, Const(0, 7), rep.cycles, rep.busy_cycles, rep.decisions)),
            self.leds.eq(Cat(core.busy, ~r)),
        ]  # fmt: skip
        return m
