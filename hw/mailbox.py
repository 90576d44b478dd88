"""Mailbox fabric: one shared message store, per-receiver pointer FIFOs, reference counts (SPEC.md §4).

A message is stored once (block RAM where the device has it) and its slot number is pushed to each
receiver's small pointer FIFO; a broadcast costs one store write and N-1 pointer pushes in one cycle.
The slot returns to the free bitmap when its last receiver has popped it.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from clove_gym.sim.params import HwParams

from .scheduler import encode, lowest_one_hot


class Mailbox(wiring.Component):
    """`send` (src, dst, payload, broadcast) -> store; `recv` (agent) pops; `rdata` follows one cycle later."""

    def __init__(self, params: HwParams) -> None:
        self.p = params.validate()
        ab, w = params.agent_bits, params.payload_bits
        self.send_layout = data.StructLayout({"src": ab, "dst": ab, "payload": w, "broadcast": 1})
        self.msg_layout = data.StructLayout({"src": ab, "payload": w})
        super().__init__(
            {
                "send": In(stream.Signature(self.send_layout)),
                "recv": In(stream.Signature(ab)),
                "rdata": Out(self.msg_layout),  # the popped message, valid the cycle after the recv
                "rdata_valid": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.p
        n, md = p.agents, p.mbox_depth
        free = Signal(p.slots, init=(1 << p.slots) - 1)
        refs = Array(Signal(range(n), name=f"refs{i}") for i in range(p.slots))

        m.submodules.store = store = memory.Memory(shape=self.msg_layout, depth=p.slots, init=[])
        # the store write is registered (off the allocation path); the read port is transparent to it, so
        # a message written at the edge where it is read still comes out
        st_wr = store.write_port()
        st_rd = store.read_port(transparent_for=(st_wr,))

        send, recv = self.send.payload, self.recv.payload
        send_fire = self.send.valid & self.send.ready
        recv_fire = self.recv.valid & self.recv.ready
        alloc_oh = lowest_one_hot(m, free, p.slots)  # per-slot updates use the one-hot directly
        alloc = encode(m, alloc_oh, p.slots)
        # the number of free slots as a thermometer code (bit k: more than k slots free): "a slot is
        # free" is bit 0, a register, and its update is two multiplexers, never an adder on the send path
        avail = Signal(p.slots, init=(1 << p.slots) - 1)
        has_free = avail[0]
        # per receiver: a pointer FIFO, its count, and registered copies of what the ports need at once
        # (head slot, non-empty, room) so recv/send decisions are a mux, not a memory read + compare
        counts = Array(Signal(range(md + 1), name=f"mcount{j}") for j in range(n))
        heads = Array(Signal(p.slot_bits, name=f"mhead{j}") for j in range(n))
        nonempty = Signal(n)
        room = Signal(n, init=(1 << n) - 1)
        dest = Signal(n)
        for j in range(n):
            fifo = memory.Memory(shape=p.slot_bits, depth=md, init=[])
            m.submodules[f"ptrs{j}"] = fifo
            after, wr = fifo.read_port(domain="comb"), fifo.write_port()
            rptr = Signal(range(md), name=f"mrptr{j}")
            wptr = Signal(range(md), name=f"mwptr{j}")
            push = send_fire & dest[j]
            pop = recv_fire & (recv == j)
            c = counts[j]
            m.d.comb += [
                dest[j].eq(Mux(send.broadcast, send.src != j, send.dst == j)),
                after.addr.eq(rptr + 1 if md > 1 else 0),  # the entry behind the head
                wr.addr.eq(wptr),
                wr.data.eq(alloc),
                wr.en.eq(push),
            ]
            with m.If(push):
                m.d.sync += wptr.eq(wptr + 1 if md > 1 else 0)
            with m.If(pop):
                m.d.sync += rptr.eq(rptr + 1 if md > 1 else 0)
            m.d.sync += c.eq(c + push - pop)
            with m.If(push & ~pop):
                m.d.sync += [nonempty[j].eq(1), room[j].eq(c + 1 < md)]
                with m.If(c == 0):
                    m.d.sync += heads[j].eq(alloc)
            with m.Elif(pop & ~push):
                m.d.sync += [nonempty[j].eq(c != 1), room[j].eq(1), heads[j].eq(after.data)]
            with m.Elif(pop & push):
                m.d.sync += heads[j].eq(Mux(c == 1, alloc, after.data))

        # others_room[s]: every agent but s has room (a broadcast from s fits); depends on registers only,
        # so the send decision is two muxes deep instead of a decode and an N-input AND
        others_room = Signal(n)
        m.d.comb += others_room.eq(Cat((room | (1 << s)) == (1 << n) - 1 for s in range(n)))
        slot = Signal(p.slot_bits)
        m.d.comb += [
            self.send.ready.eq(
                has_free
                & Mux(send.broadcast, others_room.bit_select(send.src, 1), room.bit_select(send.dst, 1))
            ),
            self.recv.ready.eq(nonempty.bit_select(recv, 1)),
            slot.eq(heads[recv]),
            st_rd.addr.eq(slot),
            st_rd.en.eq(recv_fire),
        ]
        # a popped slot's reference is released one cycle later (off the recv decision path)
        # (kept one-hot, so neither the release test nor the refcount update needs a 1-of-M mux or compare)
        pend = Signal(p.slots)
        m.d.sync += pend.eq(Mux(recv_fire, Const(1, p.slots) << slot, 0))
        release = Signal()
        m.d.comb += release.eq((pend & Cat(r == 1 for r in refs)).any())
        grow = Signal(p.slots)
        m.d.comb += grow.eq(Cat(1, avail[:-1]))
        with m.If(send_fire & ~release):
            m.d.sync += avail.eq(avail >> 1)
        with m.Elif(release & ~send_fire):
            m.d.sync += avail.eq(grow)
        for i in range(p.slots):
            with m.If(send_fire & alloc_oh[i]):
                m.d.sync += [free[i].eq(0), refs[i].eq(Mux(send.broadcast, n - 1, 1))]
            with m.Elif(pend[i]):
                m.d.sync += refs[i].eq(refs[i] - 1)
                with m.If(refs[i] == 1):
                    m.d.sync += free[i].eq(1)

        m.d.sync += [st_wr.addr.eq(alloc), st_wr.data.eq(Cat(send.src, send.payload)), st_wr.en.eq(send_fire)]
        rvalid = Signal()
        m.d.sync += rvalid.eq(recv_fire)
        m.d.comb += [self.rdata_valid.eq(rvalid), self.rdata.eq(Mux(rvalid, st_rd.data.as_value(), 0))]
        return m
