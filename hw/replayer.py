"""On-chip trace replayer: plays stimulus from block RAM into the Core and counts cycles.

The ROM holds one entry per active cycle: the idle cycles before it (run-length, so long gaps cost
one entry per 255 cycles) and the enqueue/send/recv it offers. The consumer is always ready. The
counters are what the golden model's Stats count over the same cycles: `cycles` (running), `busy`
(a queue was non-empty), `decisions`; the run ends after the last entry once every queue is empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth import Module, Signal
from amaranth.lib import data, memory, stream, wiring
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
        idx = Signal(range(n + 1))
        idx_next = Signal(range(n + 1))
        gap = Signal(8)
        e = rd.data
        done = idx == n
        fire = self.running & ~done & (gap == e.gap)
        # producer: the read address is the next index, so rd.data always holds entry `idx`
        m.d.comb += [idx_next.eq(idx + fire), rd.addr.eq(idx_next)]
        # one register stage between the ROM and the Core (the BRAM's slow output stays off the Core's
        # paths); `active` marks the stage holding a stimulus cycle, `live` that the Core is being replayed
        active, live = Signal(), Signal()
        m.d.sync += [
            self.enq.valid.eq(fire & e.enq_valid), self.enq.payload.eq(e.enq),
            self.send.valid.eq(fire & e.send_valid), self.send.payload.eq(e.send),
            self.recv.valid.eq(fire & e.recv_valid), self.recv.payload.eq(e.recv),
            active.eq(self.running & ~done), live.eq(self.running),
        ]  # fmt: skip
        m.d.comb += self.disp.ready.eq(live)
        with m.If(self.start):
            m.d.sync += [idx.eq(0), gap.eq(0), self.running.eq(1), self.cycles.eq(0), self.busy_cycles.eq(0),
                         self.decisions.eq(0), live.eq(0), active.eq(0)]  # fmt: skip
            m.d.comb += rd.addr.eq(0)
        with m.Elif(self.running):
            m.d.sync += [idx.eq(idx_next), gap.eq(0)]
            with m.If(~fire & ~done):
                m.d.sync += gap.eq(gap + 1)
            with m.If(live):
                with m.If(active | self.busy):
                    m.d.sync += [self.cycles.eq(self.cycles + 1), self.busy_cycles.eq(self.busy_cycles + self.busy),
                                 self.decisions.eq(self.decisions + self.disp.valid)]  # fmt: skip
                with m.Else():  # the stimulus is over and every queue is empty
                    m.d.sync += [self.running.eq(0), live.eq(0)]
        return m
