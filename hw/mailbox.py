"""Mailbox fabric: one shared message store, per-receiver pointer FIFOs, reference counts (SPEC.md §4).

A message is stored once (block RAM where the device has it) and its slot number is pushed to each
receiver's small pointer FIFO; a broadcast costs one store write and N-1 pointer pushes in one cycle.
The slot returns to the free bitmap when its last receiver has popped it.

A send is taken in two stages so that the accept decision (which reads every receiver's room) never
feeds the per-receiver count arithmetic in the same cycle (that chain was the iCE40 critical path):
the cycle it is accepted only registers it and its slot; the next cycle takes the slot, writes the
store and pushes the pointers. `send.ready` counts the message in flight, so backpressure stays exact.
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
        # written in the landing cycle, read at the earliest one cycle later: no transparency needed
        st_wr, st_rd = store.write_port(), store.read_port()

        send, recv = self.send.payload, self.recv.payload
        send_fire = self.send.valid & self.send.ready

        # stage 2 ("landing"): the send accepted in the previous cycle, its receivers one-hot
        land = Signal()
        land_msg = Signal(self.msg_layout)
        land_bcast = Signal()
        push = Signal(n)
        m.d.sync += [
            land.eq(send_fire),
            land_msg.eq(Cat(send.src, send.payload)),
            land_bcast.eq(send.broadcast),
        ]
        for j in range(n):
            m.d.sync += push[j].eq(send_fire & Mux(send.broadcast, send.src != j, send.dst == j))

        # the slot is chosen in the accept cycle (the lowest free one but the slot landing now), every
        # cycle whether or not a send comes, and registered: the priority encoder's carry chain ends at
        # a register, never at the pointer FIFOs, and the accept decision does not feed it
        alloc_oh = Signal(p.slots)
        alloc = Signal(p.slot_bits)
        pick = lowest_one_hot(m, free & ~Mux(land, alloc_oh, 0), p.slots)
        m.d.sync += [alloc_oh.eq(pick), alloc.eq(encode(m, pick, p.slots))]
        m.d.comb += [st_wr.addr.eq(alloc), st_wr.data.eq(land_msg), st_wr.en.eq(land)]
        # the number of free slots as a thermometer code (bit k: more than k slots free); a landing send
        # has already been counted against it by `send.ready`, which asks for two free slots then
        avail = Signal(p.slots, init=(1 << p.slots) - 1)
        has_free = Mux(land, avail[1], avail[0])

        # per receiver: a pointer FIFO, its count, and registered flags of that count (non-empty, room for
        # one more, room for two more) so the port decisions are a few LUTs on registers
        counts = Array(Signal(range(md + 1), name=f"mcount{j}") for j in range(n))
        heads = Array(Signal(p.slot_bits, name=f"mhead{j}") for j in range(n))
        nonempty = Signal(n)
        room1 = Signal(n, init=(1 << n) - 1)  # count < md
        room2 = Signal(n, init=(1 << n) - 1 if md > 1 else 0)  # count < md - 1
        room = Signal(n)  # room for a send now: the landing message counts
        pop = Signal(n)
        for j in range(n):
            fifo = memory.Memory(shape=p.slot_bits, depth=md, init=[])
            m.submodules[f"ptrs{j}"] = fifo
            after, wr = fifo.read_port(domain="comb"), fifo.write_port()
            rptr = Signal(range(md), name=f"mrptr{j}")
            wptr = Signal(range(md), name=f"mwptr{j}")
            c = counts[j]
            m.d.comb += [
                room[j].eq(Mux(push[j], room2[j], room1[j])),
                # recv == j and j's FIFO non-empty: no N-way mux on the pop enable
                pop[j].eq(self.recv.valid & (recv == j) & nonempty[j]),
                after.addr.eq(rptr + 1 if md > 1 else 0),  # the entry behind the head
                wr.addr.eq(wptr),
                wr.data.eq(alloc),
                wr.en.eq(push[j]),
            ]
            with m.If(push[j]):
                m.d.sync += wptr.eq(wptr + 1 if md > 1 else 0)
            with m.If(pop[j]):
                m.d.sync += rptr.eq(rptr + 1 if md > 1 else 0)
            m.d.sync += c.eq(c + push[j] - pop[j])
            with m.If(push[j] & ~pop[j]):
                m.d.sync += [nonempty[j].eq(1), room1[j].eq(room2[j]), room2[j].eq(c + 2 < md)]
                with m.If(c == 0):
                    m.d.sync += heads[j].eq(alloc)
            with m.Elif(pop[j] & ~push[j]):
                m.d.sync += [
                    nonempty[j].eq(c != 1),
                    room1[j].eq(1),
                    room2[j].eq(room1[j]),
                    heads[j].eq(after.data),
                ]
            with m.Elif(pop[j] & push[j]):
                m.d.sync += heads[j].eq(Mux(c == 1, alloc, after.data))

        # others_room[s]: every agent but s has room (a broadcast from s fits)
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
            st_rd.en.eq(pop.any()),
        ]
        # a popped slot's reference is released one cycle later (off the recv decision path)
        # (kept one-hot, so neither the release test nor the refcount update needs a 1-of-M mux or compare)
        pend = Signal(p.slots)
        m.d.sync += pend.eq(Mux(pop.any(), Const(1, p.slots) << slot, 0))
        release = Signal()
        m.d.comb += release.eq((pend & Cat(r == 1 for r in refs)).any())
        with m.If(land & ~release):
            m.d.sync += avail.eq(avail >> 1)
        with m.Elif(release & ~land):
            m.d.sync += avail.eq(Cat(1, avail[:-1]))
        for i in range(p.slots):
            with m.If(land & alloc_oh[i]):
                m.d.sync += [free[i].eq(0), refs[i].eq(Mux(land_bcast, n - 1, 1))]
            with m.Elif(pend[i]):
                m.d.sync += refs[i].eq(refs[i] - 1)
                with m.If(refs[i] == 1):
                    m.d.sync += free[i].eq(1)

        rvalid = Signal()
        m.d.sync += rvalid.eq(pop.any())
        m.d.comb += [self.rdata_valid.eq(rvalid), self.rdata.eq(Mux(rvalid, st_rd.data.as_value(), 0))]
        return m
