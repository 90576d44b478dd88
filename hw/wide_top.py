"""Board top for the K-wide scheduler's Fmax build: fed on chip, every grant folded into the LEDs.

The wide scheduler has no host link; to time it honestly nothing may be optimised away, so an xorshift
generator drives the K enqueue ports and `take` through input registers, the lanes go through output
registers, and every registered lane (agent and valid bits) plus a running decision counter feed a
rotating checksum whose XOR-fold drives the LEDs. The scheduler's paths are then register to register,
as in a system that feeds it from other logic.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import io
from clove_gym.sim.wide import WideParams

from .wide_scheduler import WideScheduler
from .wide_select import popcount


def xorshift64(m: Module, seed: int) -> Signal:
    """A xorshift64 (13, 7, 17) register: 64 fresh pseudo-random bits per cycle."""
    rng = Signal(64, init=seed & (2**64 - 1))
    a, b = Signal(64), Signal(64)
    m.d.comb += [a.eq(rng ^ (rng << 13)), b.eq(a ^ (a >> 7))]
    m.d.sync += rng.eq(b ^ (b << 17))
    return rng


class WideCore(Elaboratable):
    """Generator -> input registers -> WideScheduler -> output registers -> checksum; `leds` out."""

    def __init__(self, params: WideParams, structure: str, leds: int) -> None:
        self.p, self.structure = params.validate(), structure
        self.leds = Signal(leds)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        k, ab = self.p.width, self.p.base.agent_bits
        m.submodules.sched = sched = WideScheduler(self.p, self.structure)

        # input registers: each port offers with probability 3/4; the consumer takes K three times in four
        per = ab + 2
        need = k * per + 2 + (k - 1).bit_length()
        rng = Cat(xorshift64(m, 0x9E3779B97F4A7C15 + 0x1234567 * g) for g in range(-(-need // 64)))
        for x in range(k):
            bits = rng[x * per : (x + 1) * per]
            valid_q, agent_q = Signal(name=f"enq{x}_valid_q"), Signal(ab, name=f"enq{x}_agent_q")
            m.d.sync += [valid_q.eq(bits[0] | bits[1]), agent_q.eq(bits[2:])]
            m.d.comb += [sched.enq[x].valid.eq(valid_q), sched.enq[x].payload.eq(agent_q)]
        tb = rng[k * per :]
        take_q = Signal(range(k + 1))
        m.d.sync += take_q.eq(Mux(tb[0] | tb[1], k, tb[2 : 2 + (k - 1).bit_length()] % (k + 1)))
        m.d.comb += sched.take.eq(take_q)

        # output registers, the decisions made (taken valid lanes) and the checksum over all of them
        grants_q = Signal(k * ab)
        valid_q = Signal(k)
        take_d = Signal(range(k + 1))
        m.d.sync += [grants_q.eq(sched.grant.as_value()), valid_q.eq(sched.valid), take_d.eq(take_q)]
        decisions = Signal(32)
        m.d.sync += decisions.eq(decisions + popcount([valid_q[x] & (take_d > x) for x in range(k)]))
        word = Cat(grants_q, valid_q, sched.busy, decisions)
        chk = Signal(len(word))
        m.d.sync += chk.eq(Cat(chk[-1], chk[:-1]) ^ word)
        n = len(self.leds)
        m.d.comb += self.leds.eq(Cat(Cat(chk[i] for i in range(b_, len(chk), n)).xor() for b_ in range(n)))
        return m


class WideBoardTop(Elaboratable):
    """WideCore on a board's default clock and LEDs."""

    def __init__(self, params: WideParams, structure: str, leds: int) -> None:
        self.params, self.structure, self.n_leds = params, structure, leds

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.core = core = WideCore(self.params, self.structure, self.n_leds)
        for i in range(self.n_leds):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            m.d.comb += led.o.eq(core.leds[i])
        return m
