"""Host link: framed commands over a byte stream (UART) driving the Core (sim/SPEC.md §5).

Every frame gets exactly one response frame. A bad CRC, a length that does not match the opcode, an
unknown opcode, a bad argument or an inter-byte timeout is counted and answered with an error frame,
and the parser goes back to hunting for SYNC: no input sequence can wedge the link.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.crc.catalog import CRC8_SMBUS
from amaranth.lib.wiring import In, Out
from clove_gym.runtime.protocol import Op
from clove_gym.sim.params import HwParams

from .linkproto import COMMANDS, ERR_ARG, ERR_CRC, ERR_LENGTH, ERR_OPCODE, ERR_TIMEOUT, ERROR, SYNC

RESP_BYTES = max(r for _, r in COMMANDS.values())


class HostLink(wiring.Component):
    """`rx`/`tx` byte streams; master of the Core's ports; `replay_start`/`replay_status` to the replayer."""

    def __init__(self, params: HwParams, timeout_cycles: int) -> None:
        self.p = params.validate()
        self.timeout = timeout_cycles
        ab = params.agent_bits
        super().__init__(
            {
                "rx": In(stream.Signature(8)),
                "tx": Out(stream.Signature(8)),
                "enq": Out(stream.Signature(data.StructLayout({"agent": ab, "cost": params.cost_bits}))),
                "disp": In(stream.Signature(ab)),
                "send": Out(stream.Signature(data.StructLayout(
                    {"src": ab, "dst": ab, "payload": params.payload_bits, "broadcast": 1}))),
                "recv": Out(stream.Signature(ab)),
                "rdata": In(data.StructLayout({"src": ab, "payload": params.payload_bits})),
                "rdata_valid": In(1),
                "replay_start": Out(1),
                "core_reset": Out(1),
                "replay_status": In(13 * 8),
                "frames_ok": Out(16),
                "frames_bad": Out(16),
            }
        )  # fmt: skip

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        m.submodules.rx_crc = rx_crc = crc.Processor(CRC8_SMBUS(data_width=8))
        m.submodules.tx_crc = tx_crc = crc.Processor(CRC8_SMBUS(data_width=8))
        op, agent, length, count = Signal(8), Signal(8), Signal(8), Signal(8)
        args = Array(Signal(8, name=f"arg{i}") for i in range(3))
        crc_ok = Signal()
        resp = Signal(RESP_BYTES * 8)
        resp_op, resp_len = Signal(8), Signal(8)
        tx_idx = Signal(range(RESP_BYTES + 6))
        idle = Signal(range(self.timeout + 1))
        is_think, is_poll, is_send, is_recv, is_start, is_kill = (
            Signal(name=n) for n in ("is_think", "is_poll", "is_send", "is_recv", "is_start", "is_kill")
        )
        byte, got = self.rx.payload, self.rx.valid
        # the Core's outputs, registered every cycle: the response is built from these one cycle later
        seen = Signal(data.StructLayout({
            "enq_ready": 1, "disp_valid": 1, "disp_agent": p.agent_bits, "send_ready": 1, "recv_ready": 1,
            "rdata_valid": 1, "rdata": self.rdata.shape(),
        }))  # fmt: skip
        m.d.sync += seen.eq(Cat(self.enq.ready, self.disp.valid, self.disp.payload, self.send.ready,
                                self.recv.ready, self.rdata_valid, self.rdata))  # fmt: skip
        m.d.comb += [self.rx.ready.eq(1), rx_crc.data.eq(byte)]

        known, want_len, out_len = Signal(), Signal(8), Signal(8)
        known_r, len_ok, arg_ok = Signal(), Signal(), Signal()
        with m.Switch(op):
            for code, (req, rsp) in COMMANDS.items():
                with m.Case(code):
                    m.d.comb += [known.eq(1), want_len.eq(req), out_len.eq(rsp)]

        def respond(code: int | None = None) -> list:
            """Statements that queue the response (an error frame when `code` is given)."""
            if code is None:
                return [resp_op.eq(op), resp_len.eq(out_len), tx_idx.eq(0)]
            return [resp_op.eq(ERROR), resp_len.eq(2), resp.eq(Cat(Const(code, 8), op)), tx_idx.eq(0),
                    self.frames_bad.eq(self.frames_bad + 1)]  # fmt: skip

        def receive(stmts: list, nxt: str | None) -> None:
            """In a frame state: take a byte (and go to `nxt`), or time out into an error response."""
            with m.If(got):
                m.d.sync += [*stmts, idle.eq(0)]
                if nxt:
                    m.next = nxt
            with m.Elif(idle == self.timeout):
                m.d.sync += respond(ERR_TIMEOUT)
                m.next = "RESPOND"
            with m.Else():
                m.d.sync += idle.eq(idle + 1)

        with m.FSM():
            with m.State("HUNT"):
                m.d.sync += idle.eq(0)
                with m.If(got & (byte == SYNC)):
                    m.d.comb += rx_crc.start.eq(1)
                    m.next = "OP"
            with m.State("OP"):
                m.d.comb += rx_crc.valid.eq(got)
                receive([op.eq(byte)], "AGENT")
            with m.State("AGENT"):
                m.d.comb += rx_crc.valid.eq(got)
                receive([agent.eq(byte)], "LEN")
            with m.State("LEN"):
                m.d.comb += rx_crc.valid.eq(got)
                receive([length.eq(byte), count.eq(0)], None)
                with m.If(got):
                    m.next = "PAYLOAD"
                    with m.If(byte == 0):
                        m.next = "CRC"
            with m.State("PAYLOAD"):
                m.d.comb += rx_crc.valid.eq(got)
                receive([count.eq(count + 1)], None)
                with m.If(got):
                    with m.If(count < 3):
                        m.d.sync += args[count[:2]].eq(byte)
                    with m.If(count + 1 == length):
                        m.next = "CRC"
            with m.State("CRC"):
                receive([crc_ok.eq(byte == rx_crc.crc)], "CHECK")
            with m.State("CHECK"):  # register the verdicts first: the decision below is then shallow
                m.d.sync += [
                    known_r.eq(known),
                    len_ok.eq(length == want_len),
                    arg_ok.eq(
                        (agent < p.agents)
                        & ~((op == Op.THINK) & ((args[0] == 0) | (args[0] > p.max_cost)))
                        & ~((op == Op.SEND) & (args[0] >= p.agents))
                    ),
                ]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.next = "RESPOND"
                with m.If(~crc_ok):
                    m.d.sync += respond(ERR_CRC)
                with m.Elif(~known_r):
                    m.d.sync += respond(ERR_OPCODE)
                with m.Elif(~len_ok):
                    m.d.sync += respond(ERR_LENGTH)
                with m.Elif(~arg_ok):
                    m.d.sync += respond(ERR_ARG)
                with m.Else():
                    bcast = op == Op.BROADCAST
                    m.d.sync += [
                        *respond(),
                        self.frames_ok.eq(self.frames_ok + 1),
                        is_think.eq(op == Op.THINK),
                        is_poll.eq(op == Op.ASYNC_POLL),
                        is_send.eq((op == Op.SEND) | bcast),
                        is_recv.eq(op == Op.RECV),
                        is_start.eq(op == Op.REPLAY_START),
                        is_kill.eq(op == Op.KILL),
                        self.enq.payload.agent.eq(agent),
                        self.enq.payload.cost.eq(args[0]),
                        self.send.payload.src.eq(agent),
                        self.send.payload.dst.eq(args[0]),
                        self.send.payload.payload.eq(
                            Mux(bcast, Cat(args[0], args[1]), Cat(args[1], args[2]))
                        ),
                        self.send.payload.broadcast.eq(bcast),
                        self.recv.payload.eq(agent),
                    ]
                    m.next = "EXEC"
            with m.State("EXEC"):  # strobes and payloads were registered in CHECK; the top registers them
                m.next = "CAPTURE"  # again, so the Core acts on them (and answers) in the next cycle
                m.d.comb += [
                    self.enq.valid.eq(is_think),
                    self.send.valid.eq(is_send),
                    self.recv.valid.eq(is_recv),
                    self.replay_start.eq(is_start),
                    self.core_reset.eq(is_kill),
                ]
            with m.State("CAPTURE"):  # the Core answers now; its outputs are registered (below)
                m.next = "LATCH"
                m.d.comb += self.disp.ready.eq(is_poll)
            with m.State("LATCH"):  # the answer from the registered copies: no path from the Core's
                m.next = "RESPOND"  # decisions into the response multiplexer
                with m.If(is_think):
                    m.d.sync += resp.eq(seen.enq_ready)
                with m.If(is_poll):
                    m.d.sync += resp.eq(
                        Cat(seen.disp_valid, Const(0, 7), Mux(seen.disp_valid, seen.disp_agent, 0))
                    )
                with m.If(is_send):
                    m.d.sync += resp.eq(seen.send_ready)
                with m.If(is_recv):
                    m.d.sync += resp.eq(seen.recv_ready)
                    m.next = "RECV_DATA"
                with m.If(is_start | is_kill):
                    m.d.sync += resp.eq(1)
                with m.If(op == Op.REPLAY_STATUS):
                    m.d.sync += resp.eq(self.replay_status)
                with m.If(op == Op.NOOP):
                    m.d.sync += resp.eq(Cat(self.frames_ok, self.frames_bad))
            with m.State("RECV_DATA"):  # the popped message was out one cycle after the recv (registered)
                src8, payload16 = Signal(8), Signal(16)
                m.d.comb += [src8.eq(seen.rdata.src), payload16.eq(seen.rdata.payload)]
                with m.If(seen.rdata_valid):
                    m.d.sync += resp.eq(Cat(Const(1, 8), src8, payload16))
                m.next = "RESPOND"
            with m.State("RESPOND"):
                last = resp_len + 4
                cur = Signal(8)
                with m.Switch(tx_idx):
                    for i, value in enumerate((SYNC, resp_op, agent, resp_len)):
                        with m.Case(i):
                            m.d.comb += cur.eq(value)
                    with m.Default():
                        with m.If(tx_idx == last):
                            m.d.comb += cur.eq(tx_crc.crc)
                        with m.Else():
                            m.d.comb += cur.eq(resp.word_select((tx_idx - 4)[:4], 8))
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(cur), tx_crc.data.eq(cur)]
                with m.If(self.tx.ready):
                    m.d.comb += [
                        tx_crc.start.eq(tx_idx == 0),
                        tx_crc.valid.eq((tx_idx != 0) & (tx_idx != last)),
                    ]
                    m.d.sync += tx_idx.eq(tx_idx + 1)
                    with m.If(tx_idx == last):
                        m.next = "HUNT"
        return m
