"""amaranth.sim per component: Scheduler and Mailbox alone against their model halves, UART loopback."""

from __future__ import annotations

import random

from amaranth import Module
from amaranth.sim import Simulator
from clove_gym.hw.mailbox import Mailbox
from clove_gym.hw.scheduler import Scheduler
from clove_gym.hw.uart import UartRx, UartTx
from clove_gym.sim import model
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import random_cycles

P = HwParams(agents=4, depth=2, quantum=2, weights=(2, 1, 1, 2), max_cost=2, bucket_rate=70, bucket_burst=2,
             slots=4, mbox_depth=2, payload_bits=8)  # fmt: skip


def run(dut: object, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_scheduler_alone() -> None:
    dut, ref, stats = Scheduler(P), model.Scheduler(P), model.Stats()
    grants = 0

    async def bench(ctx) -> None:
        nonlocal grants
        for t, inp in enumerate(random_cycles(P, 600, seed=2, profile="quota")):
            ctx.set(dut.enq.valid, inp.enq is not None)
            if inp.enq:
                ctx.set(dut.enq.payload, {"agent": inp.enq[0], "cost": inp.enq[1]})
            ctx.set(dut.disp.ready, inp.disp_ready)
            want = ref.decide()
            got = ctx.get(dut.disp.payload) if ctx.get(dut.disp.valid) else None
            assert got == want, f"cycle {t}: rtl {got} model {want}"
            ok = inp.enq is not None and len(ref.queues[inp.enq[0]]) < P.depth
            assert (inp.enq is not None and bool(ctx.get(dut.enq.ready))) == ok
            grants += want is not None and inp.disp_ready
            ref.commit(inp.disp_ready, inp.enq if ok else None, t, stats)
            await ctx.tick()

    run(dut, bench)
    assert grants > 100


def test_mailbox_alone() -> None:
    dut, ref = Mailbox(P), model.Mailbox(P)
    received = 0

    async def bench(ctx) -> None:
        nonlocal received
        for t, inp in enumerate(random_cycles(P, 600, seed=3, profile="broadcast")):
            ctx.set(dut.send.valid, inp.send is not None)
            if inp.send:
                src, dst, payload, bcast = inp.send
                ctx.set(dut.send.payload, {"src": src, "dst": dst, "payload": payload, "broadcast": bcast})
            ctx.set(dut.recv.valid, inp.recv is not None)
            ctx.set(dut.recv.payload, inp.recv or 0)
            s_ok = inp.send is not None and ref.send_ready(inp.send[0], inp.send[1], inp.send[3])
            r_ok = inp.recv is not None and ref.recv_ready(inp.recv)
            assert (inp.send is not None and bool(ctx.get(dut.send.ready))) == s_ok, f"cycle {t}: send"
            assert (inp.recv is not None and bool(ctx.get(dut.recv.ready))) == r_ok, f"cycle {t}: recv"
            valid, src, payload = ref.rdata
            assert bool(ctx.get(dut.rdata_valid)) == valid
            if valid:
                assert (ctx.get(dut.rdata.src), ctx.get(dut.rdata.payload)) == (src, payload), f"cycle {t}"
                received += 1
            ref.commit(inp.send if s_ok else None, inp.recv if r_ok else None)
            await ctx.tick()

    run(dut, bench)
    assert received > 50


def test_uart_loopback() -> None:
    m = Module()
    m.submodules.tx = tx = UartTx(8)
    m.submodules.rx = rx = UartRx(8)
    m.d.comb += rx.rx.eq(tx.tx)
    data = bytes(random.Random(1).randrange(256) for _ in range(20))
    got = bytearray()

    async def bench(ctx) -> None:
        ctx.set(rx.data.ready, 1)
        for byte in data:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
            ctx.set(tx.data.valid, 0)
            for _ in range(8 * 11 + 4):
                await ctx.tick()
                if ctx.get(rx.data.valid):
                    got.append(ctx.get(rx.data.payload))
                    break

    run(m, bench)
    assert bytes(got) == data
