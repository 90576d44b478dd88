"""Memory and reference safety of the C parts: no leaks under churn, no refcount drift, and trace sinks
that raise or re-enter the plane behave as with the twin (and never crash)."""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc

from clove_gym.native import _native as C
from clove_gym.runtime import dataplane as D
from clove_gym.runtime.protocol import encode_frame

T = 10**12
REQUESTS = [
    (0x23, {"name": "n1"}), (0x20, {"to_name": "n1", "message": {"m": ["é", 1]}}), (0x20, {"to": 2, "message": 1.5}),
    (0x22, {"message": [1, 2], "include_self": True}), (0x21, {"max": 100}), (0x30, {"key": "k", "value": [1.5, 2]}),
    (0x30, {"key": "s", "value": "x", "scope": "agent", "ttl": 0.5}), (0x31, {"key": "k"}), (0x31, {"key": "s"}),
    (0x33, {}), (0x32, {"key": "k"}), (0x32, {"key": "s"}), (0x21, {}),
]  # fmt: skip
FRAMES = b"".join(
    encode_frame(1, op, json.dumps(obj).encode()) for op, obj in REQUESTS if op in D.FAST_OPS
) + b"".join(
    encode_frame(1, 0x30, raw)
    for raw in (b"{bad", b'{"key": "d", "key": "e"}', b'{"key": "\xff"}', b"[1]", b"NaN")
)


def churn(plane, rounds: int) -> None:
    """Traffic that leaves no state behind: every message is received, every key deleted, agents removed."""
    for i in range(rounds):
        plane.add_agent(1)
        plane.add_agent(2)
        for op, obj in REQUESTS:
            plane.handle(1 + i % 2, op, json.dumps(obj).encode(), T + i)
        out, pos, status = plane.process(1, FRAMES, 0, T + i, T)
        assert status == 0 and out
        plane.handle(1, 0x21, b'{"max": 1000}', T + i)
        plane.handle(2, 0x21, b'{"max": 1000}', T + i)
        for key in ("k", "d", "e"):
            plane.handle(1, 0x32, json.dumps({"key": key}).encode(), T + i)
        plane.handle(1, 0x33, b"", T + i + 10**10)  # expires the TTL'd entries
        plane.remove_agent(1)
        plane.remove_agent(2)


def test_no_memory_growth_under_churn(tmp_path):
    ring = C.TraceRing(tmp_path / "t.clvtrace", buffer_size=4096)
    plane = C.DataPlane()
    plane.set_trace(ring)
    churn(plane, 50)  # warm-up: scratch buffers reach their size
    assert plane.store_size() == 0 and plane.names() == {}
    gc.collect()
    tracemalloc.start()
    try:
        churn(plane, 50)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        churn(plane, 400)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        ring.close()
    assert grown < 32 * 1024, f"{grown} bytes retained after 400 rounds"


def test_no_refcount_drift():
    plane = C.DataPlane()
    plane.add_agent(2)
    payload = b'{"to": 2, "message": {"a": 1}}'
    buf = bytearray(encode_frame(1, 0x20, payload) + encode_frame(1, 0x21, b"{}"))
    sink = D.DataPlane()  # any object with .record would do; this one has none: set, then cleared
    before = [sys.getrefcount(x) for x in (payload, buf, sink)]
    plane.set_trace(sink)
    plane.set_trace(None)
    for _ in range(1000):
        plane.handle(1, 0x20, payload, T)
        plane.process(2, buf, 0, T)
        C.split_frames(buf)
        C.encode_frame(1, 2, payload)
        C.parse_header(buf)
    assert [sys.getrefcount(x) for x in (payload, buf, sink)] == before


class Boom:
    def __init__(self, after: int) -> None:
        self.left = after

    def record(self, *args, **kw) -> None:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("sink failed")


def test_raising_sink_propagates_like_the_twin(make_pair):
    pair = make_pair(trace=False)
    for n in range(4):
        pair.py.set_trace(Boom(n))
        pair.c.set_trace(Boom(n))
        pair.call("add_agent", 2)
        pair.call("handle", 2, 0x23, b'{"name": "x"}', T)
        pair.call("process", 1, encode_frame(1, 0x22, b"{}") + encode_frame(1, 0x20, b'{"to": 2}'), 0, T)
        pair.call("handle", 2, 0x21, b"{}", T)
        pair.check_state()


class Reentrant:
    """A sink that changes the plane while it is being called back."""

    def __init__(self) -> None:
        self.plane = None
        self.calls = 0

    def record(self, kind, opcode, agent_id, t_ns, **kw) -> None:
        self.calls += 1
        if self.calls < 6:
            self.plane.remove_agent(kw.get("peer_id", agent_id))
            self.plane.handle(3, 0x20, b'{"to": 3, "message": "again"}', t_ns)
            self.plane.handle(3, 0x30, b'{"key": "k", "value": 1}', t_ns)


def test_reentrant_sink_matches_the_twin(make_pair):
    pair = make_pair(trace=False)
    for plane in (pair.py, pair.c):
        sink = Reentrant()
        sink.plane = plane
        plane.set_trace(sink)
    pair.call("add_agent", 2)
    pair.call("add_agent", 3)
    pair.call("handle", 2, 0x23, b'{"name": "two"}', T)
    pair.call("handle", 3, 0x23, b'{"name": "three"}', T)
    pair.call(
        "process", 1, encode_frame(1, 0x22, b'{"message": 1}') * 2 + encode_frame(1, 0x20, b'{"to": 2}'), 0, T
    )
    pair.call("handle", 3, 0x21, b"{}", T)
    pair.call("handle", 2, 0x21, b"{}", T)
    pair.check_state()


def test_cycles_through_the_sink_are_collected():
    plane = C.DataPlane()
    sink = Reentrant()
    sink.plane = plane
    plane.set_trace(sink)
    del plane, sink
    assert gc.collect() >= 2
