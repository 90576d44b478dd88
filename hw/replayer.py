"""On-chip trace replayer: plays stimulus from block RAM into the Core and counts cycles.

The ROM holds one entry per active cycle: the idle cycles before it (run-length, so long gaps cost
one entry per 255 cycles) and the enqueue/send/recv it offers. The consumer is always ready. The
counters are what the golden model's Stats count over the same cycles: `cycles` (running), `busy`
(a queue was non-empty), `decisions`; the run ends after the last entry once every queue is empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth import Module, Mux, ResetInserter, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from clove_gym.sim.model import CycleIn
from clove_gym.sim.params import HwParams

from .ports import pack

MAX_GAP = 255


def rom_layout(p: HwParams) -> data.StructLayout:
    ab = p.agent_bits
    return data.StructLayout({
        "gap": 8,
        "enq_valid": 1, "enq": ab + p.cost_bits,
        "send_valid": 1, "send": 2 * ab + p.payload_bits + 1,
        "recv_valid": 1, "recv": ab,
    })  # fmt: skip


def rom_entries(p: HwParams, cycles: Iterable[CycleIn]) -> list[dict]:
    """Run-length encode per-cycle inputs (idle cycles become gaps)."""
    out, gap = [], 0
    for inp in cycles:
        if inp.enq is None and inp.send is None and inp.recv is None:
            gap += 1
            continue
        while gap > MAX_GAP:
            out.append({"gap": MAX_GAP - 1, "enq_valid": 0, "enq": 0, "send_valid": 0, "send": 0,
                        "recv_valid": 0, "recv": 0})  # fmt: skip
            gap -= MAX_GAP
        v = pack(p, inp)
        out.append({"gap": gap, "enq_valid": v["enq__valid"], "enq": v["enq__payload"],
                    "send_valid": v["send__valid"], "send": v["send__payload"],
                    "recv_valid": v["recv__valid"], "recv": v["recv__payload"]})  # fmt: skip
        gap = 0
    return out


class Replayer(wiring.Component):
    """Master of the Core's ports while `running`; `start` (re)starts from entry 0 and clears the counters
    (the top resets the Core on `start` too, so a replay always begins from the reset state)."""

    def __init__(self, params: HwParams, entries: list[dict]) -> None:
        self.p = params.validate()
        self.layout = rom_layout(params)
        self.entries = entries or [{"gap": 0}]
        ab = params.agent_bits
        super().__init__(
            {
                "start": In(1),
                "running": Out(1),
                "enq": Out(stream.Signature(ab + params.cost_bits)),
                "disp": In(stream.Signature(ab)),
                "send": Out(stream.Signature(2 * ab + params.payload_bits + 1)),
                "recv": Out(stream.Signature(ab)),
                "busy": In(1),
                "cycles": Out(32),
                "busy_cycles": Out(32),
                "decisions": Out(32),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = len(self.entries)
        m.submodules.rom = rom = memory.Memory(shape=self.layout, depth=n, init=self.entries)
        rd = rom.read_port()
        # prefetch: the ROM is read at a registered address into a small FIFO, so no path runs from the
        # block RAM's (slow) output back to its address
        fifo = SyncFIFO(width=self.layout.size, depth=4)
        m.submodules.fifo = ResetInserter(self.start)(fifo)
        raddr = Signal(range(n + 1))
        inflight = Signal()
        issue = Signal()
        m.d.comb += [
            issue.eq(self.running & ~self.start & (raddr < n) & (fifo.level + inflight < 3)),
            rd.addr.eq(raddr),
            rd.en.eq(issue),
            fifo.w_en.eq(inflight),
            fifo.w_data.eq(rd.data.as_value()),
        ]
        m.d.sync += [inflight.eq(issue), raddr.eq(raddr + issue)]

        e = data.View(self.layout, fifo.r_data)
        primed = Signal()  # the first entry has arrived: stimulus cycles start counting
        gap = Signal(8)
        done = Signal()
        m.d.comb += done.eq((raddr == n) & ~inflight & ~fifo.r_rdy)
        fire = Signal()
        m.d.comb += [fire.eq(self.running & primed & fifo.r_rdy & (gap == e.gap)), fifo.r_en.eq(fire)]
        # the top registers every Core input, so the Core sees this cycle's entry one cycle later:
        # `active` (a stimulus cycle) and `live` (the Core is being replayed) are delayed to match
        active, live = Signal(), Signal()
        m.d.comb += [
            self.enq.valid.eq(fire & e.enq_valid), self.enq.payload.eq(e.enq),
            self.send.valid.eq(fire & e.send_valid), self.send.payload.eq(e.send),
            self.recv.valid.eq(fire & e.recv_valid), self.recv.payload.eq(e.recv),
        ]  # fmt: skip
        m.d.sync += [active.eq(self.running & primed & ~done), live.eq(self.running & primed)]
        m.d.comb += self.disp.ready.eq(live)  # the Core's consumer: always ready during a replay
        with m.If(self.start):
            m.d.sync += [raddr.eq(0), inflight.eq(0), primed.eq(0), gap.eq(0), self.running.eq(1),
                         self.cycles.eq(0), self.busy_cycles.eq(0), self.decisions.eq(0), live.eq(0),
                         active.eq(0)]  # fmt: skip
        with m.Elif(self.running):
            with m.If(fifo.r_rdy):
                m.d.sync += primed.eq(1)
            with m.If(primed):
                m.d.sync += gap.eq(Mux(fire | done, 0, gap + 1))
            with m.If(live):
                with m.If(active | self.busy):
                    m.d.sync += [self.cycles.eq(self.cycles + 1), self.busy_cycles.eq(self.busy_cycles + self.busy),
                                 self.decisions.eq(self.decisions + self.disp.valid)]  # fmt: skip
                with m.Else():  # the stimulus is over and every queue is empty
                    m.d.sync += [self.running.eq(0), live.eq(0)]
        return m
