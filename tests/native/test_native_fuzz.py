"""Seeded mutation fuzzer: >= 1,000,000 frames through the C codec and data plane, and the twins.

Every batch goes through both codecs (results compared) and through a C data plane (responses must be
well-formed frames of JSON); one batch in TWIN_EVERY also goes through a twin data plane and a second C
plane kept in lockstep with it, compared byte for byte.
"""

from __future__ import annotations

import json
import random
import struct
import time

from clove_gym.native import _native as C
from clove_gym.runtime import dataplane as D
from clove_gym.runtime import protocol as P

SEED = 0xC10E
TOTAL_FRAMES = 1_000_000
BATCH = 250
TWIN_EVERY = 5
POOL = 20_000

NAMES = ["a", "b", "é", "\U0001f600"]
KEYS = ["k", "agent:1:k", "x/y", "é", "agent:"]
SEEDS: list[tuple[int, dict | bytes]] = [
    (0x00, b"ping"), (0x00, b""),
    (0x23, {"name": "a"}), (0x23, {"name": "b"}), (0x23, {"name": "é"}),
    (0x20, {"to": 2, "message": {"text": "hi", "n": [1, 2, None, True]}}), (0x20, {"to_name": "a", "message": "x"}),
    (0x20, {"to": 3, "message": {"deep": [[{"a": "\u00e9\n"}]]}}), (0x20, {"to_name": "zz"}),
    (0x21, {"max": 3}), (0x21, {}), (0x21, {"max": 100}),
    (0x22, {"message": {"b": 1}}), (0x22, {"message": [], "include_self": True}),
    (0x30, {"key": "k", "value": {"v": [1, "two"]}}), (0x30, {"key": "agent:1:k", "value": 1, "scope": "agent"}),
    (0x30, {"key": "x/y", "value": "s", "scope": "session", "ttl": 1}), (0x30, {"key": "é", "value": None, "ttl": 0}),
    (0x31, {"key": "k"}), (0x31, {"key": "x/y"}), (0x31, {"key": "agent:1:k"}),
    (0x32, {"key": "k"}), (0x32, {"key": "é"}), (0x33, {}), (0x33, {"prefix": "agent:"}), (0x33, b""),
    (0x01, {"prompt": "slow path"}), (0xFE, {}),
]  # fmt: skip


def _payload(obj: dict | bytes) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj).encode()


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    """One frame, often damaged: byte flips, bad headers, truncation, garbage, odd JSON."""
    kind = rng.randrange(20)
    b = bytearray(frame)
    if kind == 0 and len(b) > 17:  # a byte of the payload
        b[rng.randrange(17, len(b))] = rng.randrange(256)
    elif kind == 1:  # a byte of the header
        b[rng.randrange(17)] = rng.randrange(256)
    elif kind == 2:  # truncated
        b = b[: rng.randrange(len(b) + 1)]
    elif kind == 3:  # a size beyond the limit, or beyond the batch
        b[9:17] = struct.pack("<Q", rng.choice([P.MAX_PAYLOAD + 1, 2**64 - 1, rng.randrange(2**20)]))
    elif kind == 4:  # garbage between frames
        b += rng.randbytes(rng.randrange(1, 24))
    elif kind == 5:  # a payload of random bytes
        body = rng.randbytes(rng.randrange(40))
        b = bytearray(P.encode_frame(1, b[8], body))
    elif kind == 6:  # JSON outside the C fast subset or invalid
        body = rng.choice([b'{"key": "k", "value": 1.5}', b'{"to": 2, "to": 3}', b'{"key": "\xff"}', b"[1]",
                           b'{"max": 1e3}', b'{"message": NaN, "to": 2}', b'{"key": "k", "value": ' + b"[" * 80 + b"]" * 80 + b"}",
                           b'{"name": "\\ud83d"}', b'{"key": "k", "value": 123456789012345678901234567890}'])  # fmt: skip
        b = bytearray(P.encode_frame(1, b[8], body))
    return bytes(b)


def _pool(rng: random.Random) -> list[bytes]:
    frames = [P.encode_frame(rng.randrange(9), op, _payload(obj)) for op, obj in SEEDS]
    return [_mutate(rng, rng.choice(frames)) for _ in range(POOL)]


def _drive(plane, agent: int, buf: bytes, now: int) -> bytes:
    """The kernel's loop over one read: process(), dispatching slow frames; bad or incomplete bytes are
    skipped (where the kernel would close, drain or wait) so the frames after them still count."""
    out = []
    pos, end = 0, len(buf)
    while end - pos >= P.HEADER_SIZE:
        resp, pos, status = plane.process(agent, buf, pos, now, now - 1000)
        out.append(resp)
        if end - pos < P.HEADER_SIZE:
            break
        _magic, _aid, opcode, size = P.HEADER.unpack_from(buf, pos)
        if status in (P.SPLIT_BAD_MAGIC, P.SPLIT_OK):
            pos += 1
        elif status == P.SPLIT_OVERSIZE:  # the kernel drains `size` bytes; skipping the header resyncs sooner
            pos += P.HEADER_SIZE
        else:  # PROCESS_SLOW: plane opcodes go through handle(), the rest are skipped
            payload = buf[pos + P.HEADER_SIZE : pos + P.HEADER_SIZE + size]
            if opcode in D.PLANE_OPS:
                out.append(P.encode_frame(agent, opcode, plane.handle(agent, opcode, payload, now)))
            pos += P.HEADER_SIZE + size
    return b"".join(out)


def _responses(out: bytes, check_json: bool) -> int:
    """How many response frames `out` holds; all must be whole frames, and (checked) JSON objects."""
    frames, pos, status = C.split_frames(out, 0, 2**40)
    assert (pos, status) == (len(out), P.SPLIT_OK)
    for _aid, opcode, payload in frames if check_json else ():
        if opcode != 0:
            assert isinstance(json.loads(payload), dict)
    return len(frames)


def test_million_mutated_frames():
    rng = random.Random(SEED)
    pool = _pool(rng)
    c_all, c_pair, twin = (
        C.DataPlane(mailbox_limit=500),
        C.DataPlane(mailbox_limit=500),
        D.DataPlane(mailbox_limit=500),
    )
    for plane in (c_all, c_pair, twin):
        for agent in (1, 2, 3):
            plane.add_agent(agent)
    pushed = twin_frames = answered = 0
    start = time.perf_counter()
    batch_no = 0
    while pushed < TOTAL_FRAMES:
        batch = b"".join(rng.choices(pool, k=BATCH))
        pushed += BATCH
        batch_no += 1
        for pos in (0, rng.randrange(len(batch))):
            assert C.split_frames(batch, pos) == P.split_frames(batch, pos), (batch_no, pos)
        agent, now = 1 + batch_no % 4, 10**12 + batch_no * 50_000_000
        answered += _responses(_drive(c_all, agent, batch, now), batch_no % 10 == 0)
        if batch_no % TWIN_EVERY == 0:
            assert _drive(c_pair, agent, batch, now) == _drive(twin, agent, batch, now), batch_no
            twin_frames += BATCH
    for agent in range(6):
        assert c_pair.stats(agent) == twin.stats(agent)
        assert c_pair.mailbox_len(agent) == twin.mailbox_len(agent)
    assert c_pair.names() == twin.names() and c_pair.store_size() == twin.store_size()
    elapsed = time.perf_counter() - start
    print(f"\nfuzz: {pushed} frames through both codecs and the C plane ({answered} answered), {twin_frames} "
          f"also through the twin plane; {elapsed:.1f} s")  # fmt: skip
    assert pushed >= 1_000_000 and twin_frames >= 200_000 and answered >= 0.7 * pushed
