"""Fuzz a real kernel process with >= 1,000,000 mutated frames across every opcode, and every handler with
wrong JSON types (hypothesis), while a witness client's round trips must all succeed with correct answers.

Safety: the kernel runs as this user, so the fuzzing connections first drop every right they have
(SET_PERMS with all `can_*` false) and no seed can grant rights back or name a real script, path or
recording entry: mutations change bytes and values, never keys, and no seed carries a valid level.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from clove_gym.benchmarks.bench_server import KernelProcess
from clove_gym.benchmarks.bench_wire import FrameConn
from clove_gym.runtime.protocol import Op, encode_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TOTAL_FRAMES = int(os.environ.get("CLOVE_FUZZ_FRAMES", 1_000_000))
WORKERS = 2
CONNS_PER_WORKER = 4
BATCH = 400
NO_RIGHTS = json.dumps(
    {
        "permissions": {
            k: False for k in ("can_exec", "can_read", "can_write", "can_think", "can_spawn", "can_http")
        }
    }
).encode()

_J = json.dumps
SEEDS: dict[int, list[str]] = {
    Op.NOOP: ["", "hello", "x" * 64, "\u00e9\u00e8"],
    Op.THINK: [
        _J({"prompt": "hi", "async": False}),
        _J({"prompt": "hi", "request_id": 7}),
        _J({"prompt": ""}),
    ],
    Op.EXEC: [
        _J({"command": "true", "async": False}),
        _J({"command": "true", "timeout": 1, "request_id": 3}),
    ],
    Op.READ: [_J({"path": "fuzz-read.txt"}), _J({"path": ""})],
    Op.WRITE: [_J({"path": "fuzz-write.txt", "content": "x", "mode": "append"})],
    Op.SPAWN: [
        _J({"name": "fuzz", "sandboxed": True, "limits": {"memory": 1}}),
        _J({"restart_policy": "always"}),
    ],
    Op.KILL: [_J({"id": 4242}), _J({"name": "nobody"})],
    Op.LIST: ["", "{}"],
    Op.PAUSE: [_J({"id": 4242}), _J({"name": "nobody"})],
    Op.RESUME: [_J({"agent_id": 4242})],
    Op.SEND: [
        _J({"to": 1, "message": {"k": "v"}}),
        _J({"to_name": "fuzz-a", "message": "hi"}),
        _J({"to": 0}),
    ],
    Op.RECV: [_J({"max": 5}), _J({"max": 10000}), "{}"],
    Op.BROADCAST: [_J({"message": "b"}), _J({"message": [1, 2], "include_self": True})],
    Op.REGISTER: [_J({"name": "fuzz-a"}), _J({"name": "fuzz-b"})],
    Op.STORE: [
        _J({"key": "k1", "value": 1}),
        _J({"key": "k2", "value": {"a": [1]}, "scope": "agent", "ttl": 5}),
    ],
    Op.FETCH: [_J({"key": "k1"}), _J({"key": "k2"})],
    Op.DELETE: [_J({"key": "k1"})],
    Op.KEYS: ["", _J({"prefix": "k"})],
    Op.GET_PERMS: [""],
    Op.SET_PERMS: [_J({"level": "bogus"}), _J({"agent_id": 4242, "level": "bogus"})],
    Op.HTTP: [_J({"url": "http://127.0.0.1:9/", "method": "GET", "async": False})],
    Op.SUBSCRIBE: [_J({"event_types": ["CUSTOM"]}), _J({"event": "STATE_CHANGED"})],
    Op.UNSUBSCRIBE: [_J({"all": True}), _J({"event_types": ["CUSTOM"]})],
    Op.POLL_EVENTS: [_J({"max": 10}), ""],
    Op.EMIT: [_J({"event_type": "CUSTOM", "data": {"x": 1}}), _J({"event": "X", "data": 3})],
    Op.RECORD_START: [_J({"max_entries": 10}), _J({"filter_opcodes": [0]})],
    Op.RECORD_STOP: [""],
    Op.RECORD_STATUS: [_J({"export": True, "limit": 2}), _J({"get_entries": True})],
    Op.REPLAY_START: [_J({"recording": "[]"}), _J({"recording_data": "not json", "strict": False})],
    Op.REPLAY_STATUS: [""],
    Op.GET_AUDIT_LOG: [_J({"category": "SECURITY", "limit": 3}), _J({"since_id": 1})],
    Op.SET_AUDIT_CONFIG: [_J({"log_ipc": False}), _J({"max_entries": 100})],
    Op.ASYNC_POLL: [_J({"max": 3}), ""],
    Op.METRICS_SYSTEM: [""],
    Op.METRICS_AGENT: [_J({"agent_id": 1})],
    Op.METRICS_ALL_AGENTS: [""],
    Op.METRICS_CGROUP: [_J({"cgroup_path": "x"})],
    Op.LLM_REPORT: [_J({"tokens": 3})],
    Op.HELLO: ["", "{}"],
    Op.EXIT: [""],
}
for _op in Op:  # world and tunnel opcodes: answered as unavailable whatever the payload
    SEEDS.setdefault(_op, [_J({"name": "w", "world_id": "x", "config": {}}), ""])
FAST = (Op.NOOP, Op.SEND, Op.RECV, Op.BROADCAST, Op.STORE, Op.FETCH)
WRONG = [
    0,
    -1,
    2**70,
    1.5,
    -0.0,
    "",
    "\u00e9",
    "x" * 300,
    [],
    [1, "a", None],
    {},
    {"a": {"b": []}},
    None,
    True,
    False,
]
BAD_BYTES = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\x80\x80", b'"', b"{", b"]", b"\\u"]


def _mutate_value(rng: random.Random, text: str) -> bytes | None:
    """Replace one value of the seed object with a value of another JSON type (keys are kept)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    key = rng.choice(sorted(obj))
    obj[key] = rng.choice(WRONG)
    return json.dumps(obj).encode()


def mutate(rng: random.Random, opcode: int) -> bytes:
    """A payload for `opcode`: a seed, mutated 0-4 times at byte level or by value type."""
    seed = rng.choice(SEEDS[opcode])
    data = bytearray(seed.encode())
    for _ in range(rng.randrange(5)):
        kind = rng.randrange(8)
        if kind == 0:
            typed = _mutate_value(rng, seed)
            if typed is not None:
                data = bytearray(typed)
        elif kind == 1 and data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 2:
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.choice(BAD_BYTES)
        elif kind == 3 and data:
            i = rng.randrange(len(data))
            del data[i : i + rng.randrange(1, 8)]
        elif kind == 4:
            del data[rng.randrange(len(data) + 1) :]  # truncated JSON
        elif kind == 5:
            data += rng.randbytes(rng.randrange(1, 16))
        elif kind == 6 and data:
            i = rng.randrange(len(data))
            data[i:i] = data[i : i + rng.randrange(1, 32)]
        elif kind == 7:
            data = bytearray(rng.choice(SEEDS[opcode]).encode()) + data  # splice two seeds
    return bytes(data)


def check_reply(opcode: int, req: bytes, conn_id: int, reply: tuple[int, bytes], agent_id: int) -> str | None:
    """Why a reply is wrong, or None: same opcode, the connection's id, echo for NOOP, else well-formed
    JSON where every failure is `success: false` with an `error` string."""
    rop, payload = reply
    if rop != opcode:
        return f"reply opcode 0x{rop:02X} to a 0x{opcode:02X} request"
    if agent_id != conn_id:
        return f"reply carries agent id {agent_id}, connection is {conn_id}"
    if opcode == Op.NOOP:
        return None if payload == req else "NOOP did not echo its payload"
    if opcode == Op.EXIT:
        return None if payload == b"goodbye" else f"EXIT answered {payload[:80]!r}"
    try:
        doc = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return f"reply is not UTF-8 JSON: {payload[:200]!r}"
    if opcode == Op.LIST:
        return None if isinstance(doc, list) else f"LIST answered {payload[:200]!r}"
    if not isinstance(doc, dict):
        return f"reply is not an object: {payload[:200]!r}"
    if doc.get("success") is False and not isinstance(doc.get("error"), str):
        return f"failure without an error string: {payload[:200]!r}"
    if "success" not in doc and "error" not in doc:
        return f"reply has neither success nor error: {payload[:200]!r}"
    return None


def _fuzz_worker(path: str, seed: int, frames: int, out: Any) -> None:
    """Pipelined batches of mutated frames on several connections; every reply checked."""
    rng = random.Random(seed)
    ops = [int(op) for op in Op]
    result: dict[str, Any] = {"frames": 0, "errors": 0, "ops": set(), "problems": []}
    try:
        conns = [FrameConn(path, timeout=60) for _ in range(CONNS_PER_WORKER)]
        for c in conns:
            _op, reply = c.call(encode_frame(0, Op.SET_PERMS, NO_RIGHTS))
            assert b'"success": true' in reply, reply
        while result["frames"] < frames:
            sent = []
            for c in conns:
                batch = []
                for _ in range(BATCH):
                    r = rng.random()
                    if r < 0.6:
                        op = rng.choice(FAST)
                    elif r < 0.98:
                        op = rng.choice(ops)
                    else:
                        op = rng.randrange(256)  # including opcodes outside the table
                    payload = mutate(rng, op) if op in SEEDS else rng.randbytes(rng.randrange(32))
                    batch.append((op, payload))
                c.send(b"".join(encode_frame(rng.getrandbits(32), op, p) for op, p in batch))
                sent.append(batch)
            for c, batch in zip(conns, sent, strict=True):
                for op, payload in batch:
                    reply = c.read_frame()
                    problem = _check_any(op, payload, c.agent_id, reply, c.reply_id)
                    if problem and len(result["problems"]) < 20:
                        result["problems"].append(f"op 0x{op:02X} payload {payload[:120]!r}: {problem}")
                    result["errors"] += reply[1].startswith(b'{"success": false')
                    result["ops"].add(op)
            result["frames"] += sum(len(b) for b in sent)
        for c in conns:
            c.close()
    except Exception as exc:  # reported to the test, with the frame count reached
        result["problems"].append(
            f"worker crashed after {result['frames']} frames: {type(exc).__name__}: {exc}"
        )
    out.put(result)


def _check_any(op: int, payload: bytes, conn_id: int, reply: tuple[int, bytes], reply_id: int) -> str | None:
    if op not in SEEDS:  # outside the table: an error naming the opcode
        if reply[0] != op or reply_id != conn_id or not reply[1].startswith(b'{"success": false'):
            return f"unknown opcode answered {reply!r:.200} (header id {reply_id}, connection {conn_id})"
        return None
    return check_reply(op, payload, conn_id, reply, reply_id)


def _witness(path: str, stop: Any, out: Any) -> None:
    """NOOP, SEND and RECV round trips with known answers, until told to stop."""
    done, problems, worst = 0, [], 0.0
    try:
        with FrameConn(path, timeout=30) as a, FrameConn(path, timeout=30) as b:
            b.call(encode_frame(0, Op.NOOP, b""))
            a.call(encode_frame(0, Op.NOOP, b""))
            while not stop.is_set():
                t0 = time.monotonic()
                nonce = f"w{done}-{os.urandom(4).hex()}"
                op, echo = a.call(encode_frame(0, Op.NOOP, nonce.encode()))
                if (op, echo) != (Op.NOOP, nonce.encode()):
                    problems.append(f"NOOP answered {op} {echo!r}")
                send = _J({"to": b.agent_id, "message": {"nonce": nonce}}).encode()
                op, reply = a.call(encode_frame(b.agent_id, Op.SEND, send))  # header id = b's: ignored
                if json.loads(reply) != {"success": True, "delivered_to": b.agent_id}:
                    problems.append(f"SEND answered {reply!r}")
                op, reply = b.call(encode_frame(0, Op.RECV, b'{"max": 10000}'))
                msgs = [m for m in json.loads(reply)["messages"] if m["from"] == a.agent_id]
                if [m["message"] for m in msgs] != [{"nonce": nonce}] or msgs[0]["from_id"] != a.agent_id:
                    problems.append(f"RECV answered {reply[:300]!r}")
                worst = max(worst, time.monotonic() - t0)
                done += 1
                time.sleep(0.002)
    except Exception as exc:
        problems.append(f"witness failed after {done} round trips: {type(exc).__name__}: {exc}")
    out.put({"done": done, "problems": problems[:20], "worst_s": worst})


def _kernel(tmp: Path, python_plane: bool) -> KernelProcess:
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    env["CLOVE_GEMINI_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens: no request leaves the host
    return KernelProcess(str(tmp / "k.sock"), env=env, cwd=str(tmp), python_plane=python_plane)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory):
    """The default kernel (C data plane when built) for the million-frame run."""
    with _kernel(tmp_path_factory.mktemp("fuzz"), False) as k:
        yield k
        assert k.alive(), f"kernel died: {k.stderr_text()[-2000:]}"


@pytest.fixture(scope="module", params=["native", "python"])
def plane_kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One kernel per data plane for the per-handler tests."""
    with _kernel(tmp_path_factory.mktemp(f"handlers-{request.param}"), request.param == "python") as k:
        yield k
        assert k.alive(), f"kernel died: {k.stderr_text()[-2000:]}"


def test_a_million_mutated_frames_every_opcode_while_a_witness_is_served(kernel: KernelProcess) -> None:
    ctx = mp.get_context("fork")
    results, stop = ctx.Queue(), ctx.Event()
    witness = ctx.Process(target=_witness, args=(kernel.socket_path, stop, results))
    witness.start()
    per = -(-TOTAL_FRAMES // WORKERS)
    workers = [
        ctx.Process(target=_fuzz_worker, args=(kernel.socket_path, 1000 + i, per, results))
        for i in range(WORKERS)
    ]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    fuzz = [results.get(timeout=600) for _ in workers]
    elapsed = time.monotonic() - t0
    stop.set()
    seen = results.get(timeout=60)
    for p in (*workers, witness):
        p.join(30)
    problems = [p for r in fuzz for p in r["problems"]]
    total = sum(r["frames"] for r in fuzz)
    print(f"fuzz: {total} frames in {elapsed:.1f}s ({total / elapsed:,.0f}/s); witness {seen}")
    assert not problems, "\n".join(problems)
    assert total >= TOTAL_FRAMES
    assert {int(op) for op in Op} <= set().union(*(r["ops"] for r in fuzz)), "an opcode was never fuzzed"
    assert sum(r["errors"] for r in fuzz) > 0
    assert not seen["problems"], "\n".join(seen["problems"])
    assert seen["done"] >= 20, f"the witness was starved: only {seen['done']} round trips"
    assert kernel.alive()


# field -> what the handler expects; every value of another JSON type must be answered, never crash
FIELDS: dict[int, tuple[str, ...]] = {
    Op.THINK: ("prompt", "async", "request_id", "system_prompt", "model", "max_tokens", "temperature"),
    Op.EXEC: ("command", "async", "request_id", "timeout", "cwd"),
    Op.READ: ("path",),
    Op.WRITE: ("path", "content", "mode"),
    Op.SPAWN: (
        "script",
        "name",
        "python",
        "sandboxed",
        "network",
        "limits",
        "restart_policy",
        "max_restarts",
        "restart_window",
        "cwd",
    ),
    Op.KILL: ("id", "agent_id", "name"),
    Op.PAUSE: ("id", "agent_id", "name"),
    Op.RESUME: ("id", "agent_id", "name"),
    Op.SEND: ("to", "to_name", "message"),
    Op.RECV: ("max",),
    Op.BROADCAST: ("message", "include_self"),
    Op.REGISTER: ("name",),
    Op.STORE: ("key", "value", "scope", "ttl"),
    Op.FETCH: ("key",),
    Op.DELETE: ("key",),
    Op.KEYS: ("prefix",),
    Op.SET_PERMS: ("agent_id", "level", "permissions"),
    Op.HTTP: ("url", "method", "headers", "body", "async", "request_id", "timeout"),
    Op.SUBSCRIBE: ("event_types", "events", "event"),
    Op.UNSUBSCRIBE: ("event_types", "events", "event", "all"),
    Op.POLL_EVENTS: ("max",),
    Op.EMIT: ("event_type", "event", "data"),
    Op.RECORD_START: ("max_entries", "filter_opcodes", "filter_agents", "include_think", "include_exec"),
    Op.RECORD_STATUS: ("export", "limit", "since_id", "get_entries"),
    Op.REPLAY_START: ("recording", "recording_data", "strict"),
    Op.GET_AUDIT_LOG: ("category", "agent_id", "since_id", "limit"),
    Op.SET_AUDIT_CONFIG: ("max_entries", "log_syscalls", "log_security", "log_ipc", "log_state"),
    Op.ASYNC_POLL: ("max",),
    Op.METRICS_AGENT: ("agent_id",),
    Op.METRICS_CGROUP: ("agent_id", "cgroup_path"),
    Op.LLM_REPORT: ("tokens", "model"),
}
RIGHT_TYPE_IS_RISKY = {(Op.SET_PERMS, "level"), (Op.SET_PERMS, "permissions"), (Op.SPAWN, "script")}
SAFE_VALUES: dict[str, Any] = {"key": "k", "to": 1, "message": "m", "name": "n", "max": 3}
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_wrong_json_types_in_every_field_of_every_handler(
    plane_kernel: KernelProcess, data: st.DataObject
) -> None:
    kernel = plane_kernel
    op = data.draw(st.sampled_from(sorted(FIELDS)))
    name = data.draw(st.sampled_from(FIELDS[op]))
    value = data.draw(json_values)
    with_others = data.draw(st.booleans())
    req = {k: v for k, v in SAFE_VALUES.items() if with_others and k in FIELDS[op] and k != name}
    if (op, name) in RIGHT_TYPE_IS_RISKY and isinstance(value, str | dict):
        value = [value]  # a right-typed value could grant rights or start a process: keep it wrong
    req[name] = value
    payload = json.dumps(req).encode()
    with FrameConn(kernel.socket_path, timeout=30) as c:
        assert b'"success": true' in c.call(encode_frame(0, Op.SET_PERMS, NO_RIGHTS))[1]
        reply = c.call(encode_frame(0, op, payload))
        problem = check_reply(op, payload, c.agent_id, reply, c.reply_id)
        assert problem is None, f"{Op(op).name} {payload[:200]!r}: {problem}"
        assert c.call(encode_frame(0, Op.NOOP, b"alive")) == (Op.NOOP, b"alive")


@pytest.mark.parametrize("op", sorted(set(SEEDS) - {Op.NOOP}))
def test_non_utf8_payload_is_an_error_for_every_json_opcode(plane_kernel: KernelProcess, op: int) -> None:
    kernel = plane_kernel
    bad = b'{"key": "\xff\xfe", "name": "\xc3\x28", "message": "\xed\xa0\x80"}'
    with FrameConn(kernel.socket_path, timeout=30) as c:
        c.call(encode_frame(0, Op.SET_PERMS, NO_RIGHTS))
        reply = c.call(encode_frame(0, op, bad))
        assert check_reply(op, bad, c.agent_id, reply, c.reply_id) is None
        if op not in (
            Op.EXIT,
            Op.LIST,
            Op.HELLO,
            Op.GET_PERMS,
            Op.RECORD_STOP,
            Op.REPLAY_STATUS,
            Op.METRICS_SYSTEM,
            Op.METRICS_ALL_AGENTS,
            Op.ASYNC_POLL,
            Op.RECORD_STATUS,
            Op.GET_AUDIT_LOG,
            Op.RECORD_START,
        ):  # these ignore their payload (spec §1.8)
            assert json.loads(reply[1]).get("success") is False, (
                f"{Op(op).name} accepted non-UTF-8: {reply!r:.300}"
            )
