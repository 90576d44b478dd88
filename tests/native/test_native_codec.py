"""The C frame codec against its twin (runtime/protocol.py): same results and same exception types."""

from __future__ import annotations

import struct
from array import array

import pytest
from clove_gym.native import _native as C  # an unbuilt extension must fail these tests, not skip them
from clove_gym.runtime import protocol as P
from hypothesis import given, settings
from hypothesis import strategies as st


def outcome(fn, *args, **kw):
    """The result, or the exception type: what both implementations must agree on."""
    try:
        return ("ok", fn(*args, **kw))
    except Exception as exc:  # noqa: BLE001 - comparing exception types is the point
        return ("raised", type(exc))


def same(name: str, *args, **kw):
    py, c = outcome(getattr(P, name), *args, **kw), outcome(getattr(C, name), *args, **kw)
    assert c == py, f"{name}{args!r} {kw!r}: C {c!r} != twin {py!r}"
    return py


u32 = st.integers(0, 2**32 - 1)
u8 = st.integers(0, 255)
payloads = st.binary(max_size=64)


def frame(agent_id=1, opcode=0, payload=b"", magic=P.MAGIC, size=None) -> bytes:
    size = len(payload) if size is None else size
    return struct.pack("<IIBQ", magic, agent_id, opcode, size) + payload


@st.composite
def streams(draw):
    """Valid frames, then sometimes a bad tail: bad magic, oversized, truncated, garbage."""
    parts = [P.encode_frame(draw(u32), draw(u8), draw(payloads)) for _ in range(draw(st.integers(0, 6)))]
    tail = draw(st.sampled_from(["none", "magic", "oversize", "truncated", "garbage", "huge"]))
    if tail == "magic":
        parts.append(frame(magic=draw(u32.filter(lambda m: m != P.MAGIC)), payload=b"abc"))
    elif tail == "oversize":
        parts.append(frame(size=P.MAX_PAYLOAD + draw(st.integers(1, 2**40))))
    elif tail == "truncated":
        whole = P.encode_frame(draw(u32), draw(u8), draw(payloads))
        parts.append(whole[: draw(st.integers(0, len(whole) - 1))])
    elif tail == "garbage":
        parts.append(draw(st.binary(max_size=40)))
    elif tail == "huge":
        parts.append(frame(size=2**64 - 1))
    return b"".join(parts)


@settings(max_examples=400, deadline=None)
@given(u32, u8, payloads)
def test_encode_frame_matches_twin(agent_id, opcode, payload):
    for kind in (bytes, bytearray, memoryview):
        same("encode_frame", agent_id, opcode, kind(payload))


@settings(max_examples=400, deadline=None)
@given(streams(), st.integers(-40, 200), st.sampled_from([None, 0, 3, 64, P.MAX_PAYLOAD, -1, 2**64, 2**70]))
def test_split_frames_matches_twin(buf, pos, max_payload):
    kw = {} if max_payload is None else {"max_payload": max_payload}
    for kind in (bytes, bytearray, memoryview):
        same("split_frames", kind(buf), **kw)
        same("split_frames", kind(buf), pos, **kw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.integers(-70, 70))
def test_parse_header_matches_twin(buf, pos):
    same("parse_header", buf, pos)
    same("parse_header", bytearray(buf), pos=pos)


def test_split_frames_example():
    buf = P.encode_frame(7, 0x20, b'{"to": 1}') + P.encode_frame(8, 0, b"") + b"\x54\x4e"
    frames, pos, status = C.split_frames(buf)
    assert frames == [(7, 0x20, b'{"to": 1}'), (8, 0, b"")]
    assert (pos, status) == (len(buf) - 2, P.SPLIT_OK)
    assert C.split_frames(frame(magic=0)) == ([], 0, P.SPLIT_BAD_MAGIC)
    assert C.split_frames(frame(size=P.MAX_PAYLOAD + 1)) == ([], 0, P.SPLIT_OVERSIZE)
    assert C.split_frames(frame(size=P.MAX_PAYLOAD) + bytes(P.MAX_PAYLOAD))[2] == P.SPLIT_OK


BAD_CALLS = [
    ("encode_frame", (-1, 0, b"")),
    ("encode_frame", (2**32, 0, b"")),
    ("encode_frame", (1, 256, b"")),
    ("encode_frame", (1, -1, b"")),
    ("encode_frame", (1.5, 0, b"")),
    ("encode_frame", ("1", 0, b"")),
    ("encode_frame", (None, 0, b"")),
    ("encode_frame", (1, 0, None)),
    ("encode_frame", (1, 0, "text")),
    ("encode_frame", (1, 0, [1, 2])),
    ("encode_frame", (-1, 0, None)),  # len(payload) fails first
    ("encode_frame", (-1, 0, "text")),  # then the header field
    ("encode_frame", (True, False, b"x")),
    ("encode_frame", (1, 2)),
    ("encode_frame", (1, 2, b"", b"")),
    ("parse_header", (b"short",)),
    ("parse_header", ("x" * 20,)),
    ("parse_header", (None,)),
    ("parse_header", (bytes(17), 1)),
    ("parse_header", (bytes(17), -18)),
    ("parse_header", (bytes(17), -17)),
    ("parse_header", (bytes(17), 1.0)),
    ("parse_header", (bytes(17), 2**70)),
    ("parse_header", (bytes(17), "0")),
    ("split_frames", (None,)),
    ("split_frames", (42,)),
    ("split_frames", ("short",)),  # the twin only needs len() while nothing is parsed
    ("split_frames", ("x" * 40,)),
    ("split_frames", ([0] * 40,)),
    ("split_frames", (bytes(20), 1.5)),
    ("split_frames", (bytes(40), 30.5)),  # loop never runs: ([], 30.5, 0)
    ("split_frames", (bytes(40), None)),
    ("split_frames", (bytes(40), 2**70)),
    ("split_frames", (bytes(40), -(2**70))),
    ("split_frames", (bytes(40), -100)),
    ("split_frames", (frame(payload=b"ab"), 0, None)),
    ("split_frames", (frame(payload=b"ab"), 0, 1.5)),
    ("split_frames", (frame(payload=b"ab"), 0, "x")),
    ("split_frames", (frame(payload=b"abc") * 2, -20)),
    ("split_frames", (frame(payload=b"abc") * 3, -40)),
]


@pytest.mark.parametrize(("name", "args"), BAD_CALLS, ids=[f"{n}{a!r}"[:60] for n, a in BAD_CALLS])
def test_bad_calls_raise_like_the_twin(name, args):
    same(name, *args)


def test_keywords_like_the_twin():
    same("encode_frame", agent_id=3, opcode=4, payload=b"x")
    same("split_frames", buf=frame(payload=b"x"), pos=0, max_payload=0)
    same("parse_header", buf=frame(), pos=0)
    same("split_frames", frame(), bogus=1)
    same("encode_frame", 1, 2, b"", agent_id=1)


def test_non_byte_buffers():
    # a one-byte-item buffer behaves as bytes; struct.error texts aside, results are identical
    arr = array("B", frame(3, 4, b"xyz"))
    same("split_frames", arr)
    same("parse_header", arr)
    same("encode_frame", 1, 2, array("B", b"abc"))
