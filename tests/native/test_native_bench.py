"""Micro-benchmarks, C vs twin: split_frames, process() on NOOP/SEND/RECV batches, trace records.

Each test times both implementations the same way in the same run (median of a few rounds, no CPU
pinning: both share whatever placement the run has), prints the ratio, and hands the C side to
pytest-benchmark. They assert behaviour (equal results), never speed.
Run: .venv/bin/python -m pytest tests/native/test_native_bench.py -q -s
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest
from clove_gym.native import _native as C
from clove_gym.runtime import dataplane as D
from clove_gym.runtime import protocol as P
from clove_gym.runtime.trace.writer import TraceWriter

ROUNDS = 7
N = 1000
T = 10**12
MESSAGE = b'{"to": 2, "message": {"text": "' + b"x" * 30 + b'"}}'  # a 64-byte SEND payload


def medians(work: Callable[[object], object], setup: Callable[[], object]) -> tuple[float, float]:
    """Median and spread (max - min) in seconds of `work(setup())`, setup untimed."""
    times = []
    for _ in range(ROUNDS):
        state = setup()
        t0 = time.perf_counter()
        work(state)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times) - min(times)


def compare(benchmark, name: str, c_work, py_work, c_setup, py_setup, per: int = N) -> None:
    c_med, c_spread = medians(c_work, c_setup)
    py_med, py_spread = medians(py_work, py_setup)
    ratio = py_med / c_med
    line = (
        f"{name}: C {c_med / per * 1e9:.0f} ns/op (spread {c_spread / per * 1e9:.0f}), "
        f"twin {py_med / per * 1e9:.0f} ns/op (spread {py_spread / per * 1e9:.0f}), twin/C {ratio:.1f}x"
    )
    print("\n" + line)
    benchmark.extra_info.update(
        {"c_ns_per_op": c_med / per * 1e9, "twin_ns_per_op": py_med / per * 1e9, "ratio": ratio}
    )
    benchmark.pedantic(c_work, setup=lambda: ((c_setup(),), {}), rounds=ROUNDS)


def plane(cls, messages: int = 0):
    p = cls()
    p.add_agent(2)
    for _ in range(messages):
        p.handle(1, P.Op.SEND, MESSAGE, T)
    return p


@pytest.mark.benchmark(group="native-codec")
def test_bench_split_frames(benchmark):
    buf = b"".join(P.encode_frame(1, 0, bytes(64)) for _ in range(N))
    assert C.split_frames(buf) == P.split_frames(buf)
    compare(benchmark, "split_frames 1000x64B", C.split_frames, P.split_frames, lambda: buf, lambda: buf)


@pytest.mark.benchmark(group="native-plane")
@pytest.mark.parametrize(
    ("op", "payload", "queued"),
    [(P.Op.NOOP, bytes(64), 0), (P.Op.SEND, MESSAGE, 0), (P.Op.RECV, b'{"max": 1}', N)],
    ids=["NOOP", "SEND", "RECV"],
)
def test_bench_process(benchmark, op, payload, queued):
    buf = b"".join(P.encode_frame(1, op, payload) for _ in range(N))
    c_out, py_out = (
        plane(C.DataPlane, queued).process(2, buf, 0, T),
        plane(D.DataPlane, queued).process(2, buf, 0, T),
    )
    assert c_out == py_out and c_out[2] == P.SPLIT_OK

    def run(p):
        return p.process(2, buf, 0, T)

    compare(
        benchmark, f"process {op.name} x{N}", run, run,
        lambda: plane(C.DataPlane, queued), lambda: plane(D.DataPlane, queued),
    )  # fmt: skip


@pytest.mark.benchmark(group="native-trace")
def test_bench_trace_record(benchmark, tmp_path):
    req, resp = bytes(64), bytes(100)
    paths = iter(range(10**6))

    def opener(cls):
        return lambda: cls(tmp_path / f"{next(paths)}.clvtrace", wall_ns=0, mono_ns=0)

    def run(w):
        for i in range(N):
            w.record(0, 0x20, 7, T + i, service_ns=1500, result=0, req=req, resp=resp)
        w.close()

    a, b = opener(C.TraceRing)(), opener(TraceWriter)()
    run(a)
    run(b)
    assert open(a.path, "rb").read() == open(b.path, "rb").read()
    compare(benchmark, f"trace record x{N}", run, run, opener(C.TraceRing), opener(TraceWriter))
