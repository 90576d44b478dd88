"""Throughput load generators: SEND->RECV and BROADCAST through a kernel, and the multiprocessing.Queue
baseline.

The kernel figures pipeline frames (the protocol allows it, §1.7): batches of SENDs or BROADCASTs go out
before their replies are read, and receivers drain with one RECV {"max": 10000} per batch, so the kernel
rather than a round-trip wait bounds the rate. The next batch is written before the previous one's replies
are read, keeping the kernel busy while the client parses.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time
from collections import deque
from typing import Any

from clove_gym.benchmarks.bench_wire import FrameConn, WireError
from clove_gym.runtime.protocol import Op, encode_frame

MESSAGE = "m" * 62  # its JSON text is 64 bytes: the 64-byte message of the figures
_COUNT = re.compile(rb'"count": (\d+)')
_DELIVERED = re.compile(rb'"delivered_count": (\d+)')
RECV_ALL = encode_frame(0, Op.RECV, b'{"max": 10000}')


def _recv_count(payload: bytes) -> int:
    m = _COUNT.search(payload, 0, 64)
    if m is None or not payload.startswith(b'{"success": true'):
        raise WireError(f"RECV failed: {payload[:200]!r}")
    return int(m.group(1))


def sendrecv(path: str, messages: int, batch: int = 256) -> float:
    """One sender, one receiver, 64-byte messages: received messages per second."""
    with FrameConn(path) as snd, FrameConn(path) as rcv:
        rcv.call(encode_frame(0, Op.NOOP, b""))
        snd.call(encode_frame(0, Op.NOOP, b""))
        frame = encode_frame(0, Op.SEND, json.dumps({"to": rcv.agent_id, "message": MESSAGE}).encode())
        ok = f'{{"success": true, "delivered_to": {rcv.agent_id}}}'.encode()
        burst = frame * batch
        submitted = sent_ok = received = 0
        inflight: deque[int] = deque()

        def submit() -> None:
            nonlocal submitted
            n = min(batch, messages - submitted)
            snd.send(burst if n == batch else frame * n)
            rcv.send(RECV_ALL)
            inflight.append(n)
            submitted += n

        started = time.perf_counter()
        submit()
        while inflight:
            if submitted < messages:
                submit()
            n = inflight.popleft()
            sent_ok += sum(1 for p in snd.read_frames(n) if p == ok)
            received += _recv_count(rcv.read_frame()[1])
        while received < sent_ok:
            received += _recv_count(rcv.call(RECV_ALL)[1])
        elapsed = time.perf_counter() - started
    if sent_ok < messages:
        raise WireError(f"only {sent_ok} of {messages} SENDs succeeded")
    return received / elapsed


def broadcast(path: str, deliveries: int, agents: int = 100, batch: int = 50) -> float:
    """BROADCAST to `agents` registered receivers: deliveries (messages received) per second."""
    receivers = [FrameConn(path) for _ in range(agents)]
    try:
        with FrameConn(path) as bc:
            for i, r in enumerate(receivers):
                _op, reply = r.call(encode_frame(0, Op.REGISTER, json.dumps({"name": f"bench-{i}"}).encode()))
                if not reply.startswith(b'{"success": true'):
                    raise WireError(f"REGISTER failed: {reply!r}")
            frame = encode_frame(0, Op.BROADCAST, json.dumps({"message": MESSAGE}).encode())
            rounds = max(1, -(-deliveries // (agents * batch)))
            delivered = received = 0
            started = time.perf_counter()
            bc.send(frame * batch)
            for k in range(rounds):
                for p in bc.read_frames(batch):
                    m = _DELIVERED.search(p)
                    if m is None:
                        raise WireError(f"BROADCAST failed: {p[:200]!r}")
                    delivered += int(m.group(1))
                if k + 1 < rounds:
                    bc.send(frame * batch)
                for r in receivers:
                    r.send(RECV_ALL)
                for r in receivers:
                    received += _recv_count(r.read_frame()[1])
            while received < delivered:
                for r in receivers:
                    received += _recv_count(r.call(RECV_ALL)[1])
            elapsed = time.perf_counter() - started
    finally:
        for r in receivers:
            r.close()
    if delivered < rounds * batch * agents:
        raise WireError(f"BROADCAST delivered {delivered} of {rounds * batch * agents}")
    return received / elapsed


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _produce(q: Any, n: int, cpu: int | None) -> None:
    _pin(cpu)
    item = b"m" * 64
    for _ in range(n):
        q.put(item)


def _consume(q: Any, n: int, cpu: int | None, out: Any) -> None:
    _pin(cpu)
    q.get()
    started = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    out.put((n - 1) / (time.perf_counter() - started))


def queue_throughput(messages: int, producer_cpu: int | None, consumer_cpu: int | None) -> float:
    """Baseline: 64-byte messages per second through one multiprocessing.Queue, producer -> consumer."""
    ctx = mp.get_context("fork")
    q, out = ctx.Queue(), ctx.Queue()
    consumer = ctx.Process(target=_consume, args=(q, messages, consumer_cpu, out))
    producer = ctx.Process(target=_produce, args=(q, messages, producer_cpu))
    consumer.start()
    producer.start()
    try:
        rate: float = out.get(timeout=300)
    finally:
        producer.join(30)
        consumer.join(30)
    return rate
