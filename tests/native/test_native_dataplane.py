"""The C DataPlane against its twin (runtime/dataplane.py): same responses, state and trace calls."""

from __future__ import annotations

import json
import random
import time

import pytest
from clove_gym.native import _native as C
from clove_gym.runtime import dataplane as D
from clove_gym.runtime.protocol import Op, encode_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SEC = 1_000_000_000
T0 = 1_000 * SEC
AGENTS = [1, 2, 3, 4]
OPS = [int(op) for op in D.PLANE_OPS]

# ---- payload strategies: right and wrong types in every field, odd strings, odd encodings ----------
ODD_STRINGS = [
    "a",
    "b",
    "",
    "é",
    "\U0001f600",
    "\ud83d",
    "\ude00",
    'x"y',
    "a\\b",
    "\n\t\x00\x7f",
    "/",
    "agent:1:k",
    "agent:2:",
    "agent:",
    "agent:1:agent:1:k",
    "k",
    "k2",
    "\u2028",
    "global",
    "agent",
]
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(ODD_STRINGS),
    st.text(max_size=8),
)
any_json = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(ODD_STRINGS), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = {
    "to": st.one_of(st.sampled_from([0, 1, 2, 3, 4, 9, 2**32 - 1, 2**32, -1, 2**64, True, None]), any_json),
    "to_name": st.one_of(st.sampled_from(ODD_STRINGS[:6]), any_json),
    "name": st.one_of(st.sampled_from(ODD_STRINGS[:6]), any_json),
    "message": any_json,
    "max": st.one_of(st.sampled_from([0, 1, 2, 10, -1, 10_001, 2**64, -(2**64), None, 1.0, False]), any_json),
    "include_self": st.one_of(st.booleans(), any_json),
    "key": st.one_of(st.sampled_from(ODD_STRINGS), any_json),
    "scope": st.one_of(st.sampled_from(["global", "agent", "session", "other", "", None, 1]), any_json),
    "ttl": st.one_of(
        st.sampled_from(
            [
                None,
                0,
                1,
                2,
                -1,
                0.5,
                1.9,
                -0.5,
                1e10,
                -1e10,
                2**70,
                float("nan"),
                float("inf"),
                float("-inf"),
                True,
                "1",
            ]
        ),
        any_json,
    ),
    "value": any_json,
    "prefix": st.one_of(
        st.sampled_from(["", "a", "agent:", "agent:1:", "k", "\ud83d", "é", None, 3]), any_json
    ),
    "wait": any_json,
}


NAMES = ["a", "b", "é", "\U0001f600", "\ud83d"]
GOOD = {  # values of the right type, from small pools so requests meet (names registered, keys stored)
    "to": st.sampled_from([0, 0, 1, 2, 3, 4, 9]),
    "to_name": st.sampled_from(NAMES),
    "name": st.sampled_from(NAMES),
    "message": any_json,
    "max": st.sampled_from([0, 1, 2, 10, -1, 10**30]),
    "include_self": st.booleans(),
    "key": st.sampled_from(ODD_STRINGS),
    "scope": st.sampled_from(["global", "agent", "session", "other"]),
    "ttl": st.sampled_from([1, 2, 0, -1, 0.5, 1.9, 1e10, 2**70]),
    "value": any_json,
    "prefix": st.sampled_from(["", "a", "agent:", "agent:1:", "k", "\ud83d", "é"]),
}
OP_FIELDS = {
    Op.NOOP: [],
    Op.SEND: ["to", "to_name", "message"],
    Op.RECV: ["max"],
    Op.BROADCAST: ["message", "include_self"],
    Op.REGISTER: ["name"],
    Op.STORE: ["key", "value", "scope", "ttl"],
    Op.FETCH: ["key"],
    Op.DELETE: ["key"],
    Op.KEYS: ["prefix"],
}


@st.composite
def request_objects(draw, op=None):
    """A request for `op`: its fields, mostly well-typed; or (op None) any mix of fields and types."""
    obj = {}
    if op is None:
        for key in draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=5, unique=True)):
            obj[key] = draw(FIELD_VALUES[key])
    else:
        for key in OP_FIELDS[Op(op)]:
            if draw(st.integers(0, 4)):
                obj[key] = draw(GOOD[key] if draw(st.integers(0, 7)) else FIELD_VALUES[key])
    if draw(st.integers(0, 9)) == 0:
        obj[draw(st.sampled_from(ODD_STRINGS))] = draw(any_json)
    return obj


def _nest(depth: int) -> bytes:
    return (
        b'{"key": "k", "message": '
        + b"[" * depth
        + b"]" * depth
        + b', "value": '
        + b'{"a": ' * depth
        + b"1"
        + b"}" * depth
        + b"}"
    )


RAW_PAYLOADS = [
    b"",
    b" ",
    b"{}",
    b"[]",
    b"3",
    b'"s"',
    b"null",
    b"true",
    b"NaN",
    b"{",
    b"}",
    b"{}x",
    b"{} ",
    b"\xef\xbb\xbf{}",
    b'{"key": "a", "key": "b", "value": 1}',
    b'{"name": "a", "name": "b"}',
    b'{"key": "k", "value": {"a": 1, "a": 2, "b": 3}}',
    b'{"key": "k", "value": {"\\u0061": 1, "a": 2}}',
    b'{"key": "k", "value": 1.5e300}',
    b'{"key": "k", "value": -0.0}',
    b'{"key": "k", "value": 1E400}',
    b'{"key": "k", "value": NaN}',
    b'{"key": "k", "value": -Infinity}',
    b'{"key": "k", "value": 1e5}',
    b'{"key": "k", "value": 123456789012345678}',
    b'{"key": "k", "value": 1234567890123456789}',
    b'{"key": "k", "value": 99999999999999999999999}',
    b'{"key": "k", "value": -0}',
    b'{"key": "k", "value": 01}',
    b'{"key": "k", "value": -}',
    b'{"key": "k", "value": 1.}',
    b'{"key": "k", "value": .5}',
    b'{"key": "\\u00e9\\u00E9\\/\\ud83d\\ude00\\ud83d\\u0000x", "value": "\\ud83d\\u0041"}',
    b'{"key": "\\ude00\\ud83d", "value": "\\uD83D\\uDE00"}',
    b'{"key": "bad \\x escape"}',
    b'{"key": "\\u12"}',
    b'{"key": "\\ud83d\\uZZZZ"}',
    b'{"key": "\xff"}',
    b'{"key": "\xc0\xaf"}',
    b'{"key": "\xed\xa0\x80"}',
    b'{"key": "\xf4\x90\x80\x80"}',
    b'{"key": "\xe2\x82"}',
    b'{"key": "a\x01"}',
    b'{"key": "a\x7f\xc3\xa9\xf0\x9f\x98\x80"}',
    b'{"key": "k"\t,\r\n"value"  :\n[ 1 ,2 ] }',
    b'{"key": "k", "value": [1, 2,]}',
    b"{'key': 'k'}",
    b'{"to": 2, "message": tru}',
    b'{"to": 2, "message": nulll}',
    b'{"to": 2,}',
    b"{,}",
    b'{"to" 2}',
    _nest(10),
    _nest(64),
    _nest(65),
    _nest(200),
    _nest(5000),
    b'{"key": "k", "value": {' + b", ".join(b'"k%d": %d' % (i, i) for i in range(70)) + b"}}",
]


@st.composite
def payloads(draw, op=None):
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return draw(st.sampled_from(RAW_PAYLOADS))
    if choice == 1:
        return draw(st.binary(max_size=24))
    obj = draw(request_objects(None if choice == 4 or op is None else op))
    style = draw(st.sampled_from(["default", "compact", "raw", "indent"]))
    if style == "compact":
        text = json.dumps(obj, separators=(",", ":"))
    elif style == "raw":
        text = json.dumps(obj, ensure_ascii=False)
    elif style == "indent":
        text = json.dumps(obj, indent=1)
    else:
        text = json.dumps(obj)
    data = text.encode("utf-8", "surrogatepass")
    if choice == 2 and data:  # one mutated byte
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    elif choice == 3:  # truncated
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def bad_tails(draw) -> bytes:
    """What may follow the good frames of a read: nothing, bad magic, an oversize header, a truncated
    frame, garbage."""
    kind = draw(st.sampled_from(["none", "none", "magic", "oversize", "truncated", "garbage"]))
    if kind == "magic":
        return b"XXXX" + encode_frame(1, 0, b"abc")[4:]
    if kind == "oversize":
        return encode_frame(1, 0x20, b"")[:9] + draw(st.integers(D.MAX_PAYLOAD + 1, 2**64 - 1)).to_bytes(
            8, "little"
        )
    if kind == "truncated":
        whole = encode_frame(1, 0x20, b'{"to": 2}')
        return whole[: draw(st.integers(0, len(whole) - 1))]
    if kind == "garbage":
        return draw(st.binary(max_size=30))
    return b""


@st.composite
def requests(draw, ops=OPS):
    op = draw(st.sampled_from(ops))
    return op, draw(payloads(op if op in OPS else None))


steps = st.one_of(
    st.tuples(st.just("handle"), st.sampled_from(AGENTS), requests()),
    st.tuples(
        st.just("process"),
        st.sampled_from(AGENTS),
        st.lists(requests(OPS + [0x01, 0xFE]), max_size=4),
        bad_tails(),
    ),
    st.tuples(st.just("add"), st.sampled_from(AGENTS + [9])),
    st.tuples(st.just("remove"), st.sampled_from(AGENTS)),
    st.tuples(st.just("fast"), st.sets(st.sampled_from([int(op) for op in D.FAST_OPS]))),
)


def run_steps(pair, seq) -> None:
    for agent in AGENTS[:3]:
        pair.call("add_agent", agent)
    now = T0
    for step in seq:
        now += SEC // 3
        kind = step[0]
        if kind == "handle":
            pair.call("handle", step[1], step[2][0], step[2][1], now)
        elif kind == "process":
            buf = b"".join(encode_frame(99, op, data) for op, data in step[2]) + step[3]
            pair.call("process", step[1], buf, 0, now, now - 5000)
        elif kind == "add":
            pair.call("add_agent", step[1])
        elif kind == "remove":
            pair.call("remove_agent", step[1])
        else:
            pair.call("set_fast_ops", step[1])
        pair.check_state()


@settings(
    max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(steps, min_size=8, max_size=30))
def test_random_sequences_match_twin(make_pair, seq):
    run_steps(make_pair(), seq)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(steps, min_size=8, max_size=30))
def test_random_sequences_with_small_limits(make_pair, seq):
    run_steps(make_pair(mailbox_limit=2, store_limit=3), seq)


@pytest.mark.parametrize("payload", RAW_PAYLOADS, ids=range(len(RAW_PAYLOADS)))
@pytest.mark.parametrize("op", OPS)
def test_every_opcode_on_odd_payloads(pair, op, payload):
    pair.call("add_agent", 2)
    pair.call("handle", 2, 0x23, b'{"name": "b"}', T0)
    pair.call("handle", 1, op, payload, T0)
    pair.call("handle", 1, op, payload, T0)  # again: second STORE overwrites, second FETCH finds, ...
    pair.call("handle", 2, 0x21, b"{}", T0 + SEC)
    pair.call("handle", 1, 0x33, b"{}", T0 + SEC)
    pair.check_state()


SCENARIO = [
    (1, Op.REGISTER, {"name": "alice"}),
    (2, Op.REGISTER, {"name": "bob"}),
    (2, Op.REGISTER, {"name": "alice"}),
    (1, Op.REGISTER, {"name": "al"}),
    (3, Op.SEND, {"to_name": "al", "message": {"hi": [1, "é"]}}),
    (3, Op.SEND, {"to": 2, "message": "x"}),
    (3, Op.SEND, {"to": 9}),
    (3, Op.SEND, {}),
    (3, Op.SEND, {"to_name": "zed"}),
    (3, Op.SEND, {"to": 2**32}),
    (3, Op.SEND, {"to": "2"}),
    (3, Op.BROADCAST, {"message": None}),
    (1, Op.BROADCAST, {"message": [1], "include_self": True}),
    (1, Op.BROADCAST, {"include_self": None}),
    (1, Op.RECV, {"max": 1}),
    (1, Op.RECV, {}),
    (2, Op.RECV, {"max": -1}),
    (2, Op.RECV, {"max": 10**30}),
    (1, Op.STORE, {"key": "k", "value": {"v": 1}}),
    (2, Op.STORE, {"key": "k", "value": 2, "scope": "agent"}),
    (2, Op.STORE, {"key": "s", "value": 3, "scope": "session"}),
    (1, Op.FETCH, {"key": "k"}),
    (2, Op.FETCH, {"key": "k"}),
    (1, Op.FETCH, {"key": "s"}),
    (1, Op.DELETE, {"key": "s"}),
    (2, Op.KEYS, {}),
    (2, Op.KEYS, {"prefix": "agent:2:"}),
    (1, Op.STORE, {"key": "agent:2:x", "value": 1}),
    (2, Op.KEYS, {"prefix": "agent:"}),
    (1, Op.STORE, {"key": "t", "ttl": 1}),
    (1, Op.STORE, {"key": "t0", "ttl": 0}),
    (1, Op.FETCH, {"key": "t0"}),
    (1, Op.KEYS, {}),
    (2, Op.DELETE, {"key": "k"}),
    (1, Op.DELETE, {"key": "nope"}),
    (1, Op.STORE, {"key": ""}),
    (1, Op.STORE, {"key": 5}),
    (1, Op.KEYS, {"prefix": 5}),
]


def test_scenario_matches_twin_step_by_step(pair):
    pair.call("add_agent", 1)
    pair.call("add_agent", 2)
    for i, (agent, op, obj) in enumerate(SCENARIO):
        out = pair.call("handle", agent, int(op), json.dumps(obj).encode(), T0 + i * SEC // 2)
        assert out[0] == "ok"
        json.loads(out[1])  # every response is JSON
        pair.check_state()
    pair.call("remove_agent", 1)
    pair.check_state()
    assert pair.c.names() == {"bob": 2}


def test_surrogate_prefix_does_not_split_a_pair(pair):
    pair.call("handle", 1, 0x30, json.dumps({"key": "\U0001f600x"}).encode(), T0)
    pair.call("handle", 1, 0x30, json.dumps({"key": "\ud83dx"}).encode(), T0)
    out = pair.call("handle", 1, 0x33, json.dumps({"prefix": "\ud83d"}).encode(), T0)
    assert out == ("ok", b'{"success": true, "keys": ["\\ud83dx"], "count": 1}')
    assert pair.call("handle", 1, 0x23, b'{"name": "\\ud83d\\ude00"}', T0)[0] == "ok"
    assert pair.c.names() == {"\U0001f600": 1}


def test_limits_and_constructor_errors(make_pair):
    pair = make_pair(mailbox_limit=1, store_limit=1)
    pair.call("add_agent", 2)
    for _ in range(2):
        pair.call("handle", 1, 0x20, b'{"to": 2}', T0)
        pair.call("handle", 1, 0x30, b'{"key": "a"}', T0)
        pair.call("handle", 1, 0x30, b'{"key": "b"}', T0)
    pair.check_state()
    pair.py.mailbox_limit = pair.c.mailbox_limit = 3
    pair.call("handle", 1, 0x20, b'{"to": 2}', T0)
    pair.check_state()
    for bad in ({"mailbox_limit": 0}, {"store_limit": -5}, {"mailbox_limit": 0, "store_limit": 0}):
        with pytest.raises(ValueError):
            D.DataPlane(**bad)
        with pytest.raises(ValueError):
            C.DataPlane(**bad)


def test_bad_method_calls_raise_like_the_twin(make_pair):
    pair = make_pair(
        trace=False
    )  # real clock here; and the twin traces a frame before failing on agent 2**32
    pair.call("handle", 1, 0x01, b"{}")
    pair.call("handle", 1, 0x100, b"{}")
    pair.call("handle", 1, -3, b"{}")
    pair.call("set_fast_ops", [0x23])
    pair.call("set_fast_ops", [1, 2, 0x20])
    pair.call("set_fast_ops", ["32", 0])
    pair.call("set_fast_ops", ["x"])
    pair.call("set_fast_ops", 5)
    pair.call("set_fast_ops", [])
    pair.call("process", 1, encode_frame(1, 0x20, b"{}") + encode_frame(1, 0, b""))
    pair.call("set_fast_ops", [Op.NOOP, Op.SEND])
    pair.call("process", 1, encode_frame(1, 0, b"x") + encode_frame(1, 0x21, b"{}"))
    pair.call("process", 1, "not bytes" * 5)
    pair.call("process", 1, None)
    pair.call("process", 1, encode_frame(1, 0, b"x"), 1.5)
    pair.call("process", 2**32, encode_frame(1, 0, b"x"))
    pair.call("process", -1, encode_frame(1, 0, b"x"))
    pair.call("process", 1, encode_frame(1, 0, b"abc") * 3, -30)
    pair.call("process", 1, encode_frame(1, 0, b"abc") * 3, -200)
    pair.call("process", 1, encode_frame(1, 0, b"abc") * 3, 10**6)
    pair.call("handle", 1, 0x20)
    pair.call("process")
    pair.check_state()


def test_process_statuses(pair):
    good = encode_frame(1, 0, b"ping")
    bad_magic = b"XXXX" + good[4:]
    oversize = encode_frame(1, 0, b"")[:9] + (D.MAX_PAYLOAD + 1).to_bytes(8, "little")
    for buf in (
        good + bad_magic,
        good + oversize,
        good + encode_frame(1, 0x23, b"{}"),
        good + good[:10],
        b"",
    ):
        for kind in (bytes, bytearray, memoryview):
            pair.call("process", 3, kind(buf), 0, T0, T0 - 10)
    pair.check_state()


def test_real_clock_when_now_is_zero():
    plane = C.DataPlane()
    plane.add_agent(2)
    assert plane.handle(1, 0x30, b'{"key": "t", "ttl": 1}') == b'{"success": true, "key": "t"}'
    now = time.monotonic_ns()
    assert b'"exists": true' in plane.handle(1, 0x31, b'{"key": "t"}', now)
    assert b'"exists": false' in plane.handle(1, 0x31, b'{"key": "t"}', now + 2 * SEC)
    plane.handle(1, 0x20, b'{"to": 2}', now - 3 * SEC)
    age = json.loads(plane.handle(2, 0x21, b"{}"))["messages"][0]["age_ms"]
    assert 3000 <= age < 3000 + 60_000  # enqueued "3 s ago" on the same clock as time.monotonic_ns()


def test_random_splits_of_a_stream(make_pair):
    frames = [
        (0x23, b'{"name": "n"}'),
        (0x00, b"ping"),
        (0x20, b'{"to": 2, "message": {"a": "\\u00e9"}}'),
        (0x22, b'{"message": [1, 2]}'),
        (0x30, b'{"key": "k", "value": 1}'),
        (0x31, b'{"key": "k"}'),
        (0x21, b'{"max": 5}'),
        (0x20, b"{bad"),
        (0x00, b""),
    ]
    stream = b"".join(encode_frame(1, op, data) for op, data in frames)

    def feed(plane, chunks):
        out, buf = b"", b""
        for chunk in chunks:
            buf += chunk
            pos = 0
            while True:
                resp, pos, status = plane.process(1, buf, pos, T0, T0)
                out += resp
                if status != D.PROCESS_SLOW:
                    break
                size = int.from_bytes(buf[pos + 9 : pos + 17], "little")
                out += plane.handle(1, buf[pos + 8], buf[pos + 17 : pos + 17 + size], T0)
                pos += 17 + size
            buf = buf[pos:]
        return out, buf

    rng = random.Random(7)
    cuttings = [[cut] for cut in range(len(stream) + 1)]  # one cut at every position
    cuttings += [sorted(rng.sample(range(len(stream)), rng.randint(2, 12))) for _ in range(100)]
    whole = None
    for cuts in cuttings:
        pair = make_pair()
        for plane in (pair.py, pair.c):
            plane.add_agent(2)
            plane.set_fast_ops([0x00, 0x20, 0x21, 0x22, 0x30])  # FETCH goes the slow way
        bounds = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        py, c = feed(pair.py, chunks), feed(pair.c, chunks)
        assert c == py, cuts
        assert py[1] == b""
        whole = whole or py[0]
        assert py[0] == whole  # cutting the stream anywhere changes nothing
        pair.check_state()


def test_trace_ring_and_writer_get_identical_files(tmp_path):
    from clove_gym.runtime.trace.writer import TraceWriter

    py, c = D.DataPlane(), C.DataPlane()
    pw = TraceWriter(tmp_path / "py.clvtrace", buffer_size=300, cap=16, wall_ns=1, mono_ns=2)
    cr = C.TraceRing(tmp_path / "c.clvtrace", buffer_size=300, cap=16, wall_ns=1, mono_ns=2)
    py.set_trace(pw)
    c.set_trace(cr)
    buf = b"".join(
        encode_frame(1, op, data)
        for op, data in [
            (0, b"x" * 40),
            (0x20, b'{"to": 2, "message": "' + b"m" * 300 + b'"}'),
            (0x22, b"{}"),
            (0x30, b'{"key": "k"}'),
            (0x31, b"{}"),
            (0x31, b'{"key": "k"}'),
        ]
    )
    for plane in (py, c):
        plane.add_agent(2)
        plane.handle(2, 0x23, b'{"name": "two"}', T0)
        assert plane.process(1, buf, 0, T0, T0 - 7)[2] == 0
        assert plane.process(2, encode_frame(2, 0x21, b"{}"), 0, T0 + SEC, 0)[2] == 0
    pw.close()
    cr.close()
    assert (tmp_path / "c.clvtrace").read_bytes() == (tmp_path / "py.clvtrace").read_bytes()
    assert cr.records == pw.records == 11  # 7 syscalls, 2 enqueues, 2 dequeues
