"""The scheduler and the mailbox fabric clocked together: the unit checked against sim.model.Core."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from clove_gym.sim.params import HwParams

from .mailbox import Mailbox
from .scheduler import Scheduler


class Core(wiring.Component):
    """Ports of the scheduler (`enq`, `disp`, `busy`) and of the mailbox (`send`, `recv`, `rdata`)."""

    def __init__(self, params: HwParams) -> None:
        self.p = params.validate()
        self.sched = Scheduler(params)
        self.mbox = Mailbox(params)
        super().__init__({**self.sched.signature.members, **self.mbox.signature.members})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.sched = self.sched
        m.submodules.mbox = self.mbox
        for unit in (self.sched, self.mbox):
            for name, member in unit.signature.members.items():
                if member.is_signature:
                    wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(unit, name))
                else:
                    m.d.comb += getattr(self, name).eq(getattr(unit, name))
        return m
