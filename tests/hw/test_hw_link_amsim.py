"""amaranth.sim: UART, host link (good and bad frames) and the on-chip replayer inside SystemTop."""

from __future__ import annotations

import struct

from amaranth.sim import Simulator
from clove_gym.hw import linkproto as lp
from clove_gym.hw.replayer import rom_entries
from clove_gym.hw.top import SystemTop
from clove_gym.runtime.protocol import Op
from clove_gym.sim import model
from clove_gym.sim.params import HwParams
from clove_gym.sim.stimulus import random_cycles

P = HwParams(agents=4, depth=4, max_cost=1, slots=8, mbox_depth=2)
BAUD, DIV = 115_200, 8


def model_counters(cycles: list[model.CycleIn]) -> dict[str, int]:
    """What the replayer must count: the stimulus, then idle cycles until every queue is empty."""
    last = max(i for i, c in enumerate(cycles) if c.enq or c.send or c.recv is not None)
    core = model.Core(P)
    for inp in cycles[: last + 1]:
        core.step(inp)
    while any(core.sched.queues):
        core.step(model.CycleIn())
    s = core.stats
    return {"running": 0, "cycles": s.cycles, "busy_cycles": s.busy_cycles, "decisions": s.decisions}


def test_uart_host_link_and_replayer() -> None:
    stim = list(random_cycles(P, 300, seed=4)) + [model.CycleIn()] * 400  # a long gap: filler entries
    stim += list(random_cycles(P, 50, seed=5))
    stim = [model.CycleIn(enq=c.enq, send=c.send, recv=c.recv) for c in stim]  # the replayer is always ready
    top = SystemTop(P, clk_hz=BAUD * DIV, rom=rom_entries(P, stim))
    sim = Simulator(top)
    sim.add_clock(1 / (BAUD * DIV))
    answers: list[tuple] = []

    async def bench(ctx) -> None:
        async def send_bytes(data: bytes) -> None:
            for byte in data:
                for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                    ctx.set(top.rx, bit)
                    await ctx.tick().repeat(DIV)

        async def read_frame() -> lp.Frame:
            buf = b""
            while True:
                while ctx.get(top.tx):  # wait for a start bit
                    await ctx.tick()
                await ctx.tick().repeat(DIV + DIV // 2)
                byte = 0
                for i in range(8):
                    byte |= ctx.get(top.tx) << i
                    await ctx.tick().repeat(DIV)
                buf += bytes([byte])
                frame, _ = lp.decode(buf)
                if frame:
                    return frame

        async def call(op: int, agent: int = 0, payload: bytes = b"", raw: bytes | None = None) -> lp.Frame:
            await send_bytes(raw if raw is not None else lp.encode(op, agent, payload))
            return await read_frame()

        await ctx.tick().repeat(2000)  # the boot replay (~760 cycles) finishes first
        status = lp.replay_status(lp.check(await call(Op.REPLAY_STATUS), Op.REPLAY_STATUS))
        answers.append(("status", status))
        for agent in range(4):  # the replay leaves messages behind: drain every mailbox first
            while lp.check(await call(Op.RECV, agent), Op.RECV)[0]:
                pass
        answers.append(("think", lp.check(await call(Op.THINK, 1, b"\x01"), Op.THINK)))
        answers.append(("poll", lp.check(await call(Op.ASYNC_POLL), Op.ASYNC_POLL)))
        answers.append(("poll", lp.check(await call(Op.ASYNC_POLL), Op.ASYNC_POLL)))
        answers.append(
            ("send", lp.check(await call(Op.SEND, 0, bytes([2]) + struct.pack("<H", 0xBEEF)), Op.SEND))
        )
        answers.append(("recv", lp.check(await call(Op.RECV, 2), Op.RECV)))
        answers.append(
            ("bcast", lp.check(await call(Op.BROADCAST, 3, struct.pack("<H", 0x1234)), Op.BROADCAST))
        )
        answers.append(("recv", lp.check(await call(Op.RECV, 0), Op.RECV)))
        good = lp.encode(Op.THINK, 1, b"\x01")
        answers.append(("crc", await call(0, raw=good[:-1] + bytes([good[-1] ^ 0x5A]))))
        answers.append(("opcode", await call(0x99, 0)))
        answers.append(("length", await call(Op.THINK, 1, b"\x01\x02")))
        answers.append(("arg", await call(Op.THINK, 7, b"\x01")))
        await send_bytes(good[:3])  # truncated: the link times out, answers, and keeps working
        answers.append(("timeout", await read_frame()))
        answers.append(("noop", lp.check(await call(Op.NOOP), Op.NOOP)))
        # KILL resets the Core: a queued request is gone afterwards
        assert lp.check(await call(Op.THINK, 2, b"\x01"), Op.THINK) == b"\x01"
        assert lp.check(await call(Op.KILL), Op.KILL) == b"\x01"
        answers.append(("after_kill", lp.check(await call(Op.ASYNC_POLL), Op.ASYNC_POLL)))

    sim.add_testbench(bench)
    sim.run()
    got = dict((k, v) for k, v in answers if k in ("status",))
    assert got["status"] == model_counters(stim)
    assert got["status"]["decisions"] > 50
    seq = [v for k, v in answers if k not in ("status",)]
    assert seq[0] == b"\x01"  # THINK accepted
    assert seq[1] == b"\x01\x01" and seq[2] == b"\x00\x00"  # granted agent 1, then nothing left
    assert seq[3] == b"\x01"
    assert seq[4] == bytes([1, 0]) + struct.pack("<H", 0xBEEF)  # got, from agent 0
    assert seq[5] == b"\x01"
    assert seq[6] == bytes([1, 3]) + struct.pack("<H", 0x1234)
    errors = [(f.opcode, f.payload) for f in seq[7:12]]
    assert errors == [
        (lp.ERROR, bytes([lp.ERR_CRC, Op.THINK])),
        (lp.ERROR, bytes([lp.ERR_OPCODE, 0x99])),
        (lp.ERROR, bytes([lp.ERR_LENGTH, Op.THINK])),
        (lp.ERROR, bytes([lp.ERR_ARG, Op.THINK])),
        (lp.ERROR, bytes([lp.ERR_TIMEOUT, Op.THINK])),
    ]
    ok, bad = struct.unpack("<HH", seq[12])
    assert seq[13] == b"\x00\x00"  # nothing left to dispatch after KILL
    assert bad == 5 and ok >= 9 + 2  # 9 good frames above, plus at least the two draining RECVs
