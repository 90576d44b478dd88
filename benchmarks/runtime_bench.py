"""`clove-gym bench runtime`: the runtime figures of issue 2, each next to a baseline from the same run.

What is measured, and how (fairness notes are printed with the results):
  * the kernel runs in its own process (`bench_server`), pinned with sched_setaffinity; the clients are
    pinned too: `--cpus same` puts kernel and client on one CPU, `split` on two. Every baseline runs with
    the same placement, interleaved with the kernel runs, repetition by repetition;
  * NOOP round trip and 64 clients: the C closed-loop client `uds_pingpong client` (so Python's client
    costs nothing) against the kernel and against the raw C echo server `uds_pingpong serve`;
  * SEND->RECV and BROADCAST: pipelined frames from a Python client (bench_load); baseline: one
    multiprocessing.Queue producer -> consumer (a delivery is one message either way);
  * tracing: the same NOOP loop against a second kernel that records a trace, interleaved with the first;
  * every figure for the C data plane and for the pure-Python twin (`Kernel(use_native=False)`).
Values are medians over repetitions with [min-max]; p50/p99 are per repetition, then the median.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clove_gym.benchmarks import bench_load
from clove_gym.benchmarks.bench_baseline import EchoServer, ping_client
from clove_gym.benchmarks.bench_server import KernelProcess

SCHEMA = "clove-gym.bench.runtime/1"
# baselines, by the short name the table shows
PINGPONG = "C ping-pong"
UNTRACED = "untraced"
QUEUE = "mp.Queue"
ECHO64 = "C echo x64"
BASELINES = {
    PINGPONG: "uds_pingpong client -> uds_pingpong serve: raw C Unix-socket ping-pong, two processes, 81-byte frames",
    UNTRACED: "the same kernel build without tracing, NOOP p50 (us), interleaved with the traced runs",
    QUEUE: "multiprocessing.Queue, one producer process -> one consumer process, 64-byte messages/s",
    ECHO64: "uds_pingpong client with 64 connections against the C echo server",
}


@dataclass(frozen=True)
class Placement:
    mode: str
    kernel_cpu: int
    client_cpu: int

    def describe(self) -> str:
        if self.mode == "same":
            return f"kernel and client pinned to CPU {self.kernel_cpu} (baselines likewise)"
        return f"kernel pinned to CPU {self.kernel_cpu}, client to CPU {self.client_cpu} (baselines likewise)"


def placement(mode: str) -> Placement:
    """CPUs for kernel and client; `split` needs two CPUs this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if mode == "same":
        return Placement(mode, cpus[0], cpus[0])
    if mode == "split":
        if len(cpus) < 2:
            raise ValueError(f"--cpus split needs two CPUs; this process may use only {cpus}")
        return Placement(mode, cpus[0], cpus[1])
    raise ValueError(f"--cpus must be 'same' or 'split', not {mode!r}")


@dataclass(frozen=True)
class Params:
    reps: int
    noop_rounds: int
    clients_seconds: float
    messages: int
    deliveries: int
    queue_messages: int

    @classmethod
    def for_run(cls, quick: bool) -> Params:
        if quick:
            return cls(
                reps=3,
                noop_rounds=3000,
                clients_seconds=0.5,
                messages=20_000,
                deliveries=50_000,
                queue_messages=20_000,
            )
        return cls(
            reps=7,
            noop_rounds=20_000,
            clients_seconds=2.0,
            messages=200_000,
            deliveries=500_000,
            queue_messages=200_000,
        )


@dataclass
class Spread:
    """Median and range of one quantity over repetitions."""

    median: float
    min: float
    max: float
    samples: list[float]

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        return cls(statistics.median(samples), min(samples), max(samples), list(samples))


@dataclass
class Figure:
    name: str
    plane: str
    unit: str
    value: Spread
    baseline_name: str
    baseline: Spread | None
    target: str
    passed: bool
    ratio: float | None = None
    note: str = ""


@dataclass
class Report:
    placement: Placement
    params: Params
    quick: bool
    planes: dict[str, dict[str, Any]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started": self.started,
            "seconds": round(self.seconds, 2),
            "quick": self.quick,
            "host": {**host_info(), "loadavg": os.getloadavg()},
            "placement": {**asdict(self.placement), "description": self.placement.describe()},
            "params": asdict(self.params),
            "planes": self.planes,
            "figures": [asdict(f) for f in self.figures],
            "notes": self.notes,
        }


def host_info() -> dict[str, Any]:
    """The machine a benchmark report was measured on (both `bench` reports carry it)."""
    return {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
    }


def _us(ns: float) -> float:
    return ns / 1000.0


def _pinned(cpu: int, fn: Callable[[], float]) -> float:
    """Run fn with this process pinned to `cpu` (the Python-side client), then restore the mask."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        return fn()
    finally:
        os.sched_setaffinity(0, before)


def measure_plane(plane: str, place: Placement, params: Params, tmp: str, report: Report) -> None:
    """Every figure for one data plane ('native' or 'python'), interleaved with its baselines."""
    py = plane == "python"
    kc, cc = place.kernel_cpu, place.client_cpu
    echo_path, off_path, on_path = (os.path.join(tmp, f"{plane}-{n}.sock") for n in ("echo", "off", "on"))
    trace = os.path.join(tmp, f"{plane}.clvtrace")
    with (
        EchoServer(echo_path, kc),
        KernelProcess(off_path, cpu=kc, python_plane=py) as k_off,
        KernelProcess(on_path, cpu=kc, python_plane=py, trace_path=trace),
    ):
        if plane == "native" and not k_off.native:
            report.planes[plane] = {"available": False}
            report.notes.append("native: the C DataPlane is not built; only the Python twin was measured")
            return
        report.planes[plane] = {"available": True, "kernel_native": k_off.native, "kernel_pid": k_off.pid}
        rt: dict[str, list[dict[str, Any]]] = {"echo": [], "off": [], "on": []}
        many: dict[str, list[dict[str, Any]]] = {"echo": [], "off": []}
        rates: dict[str, list[float]] = {"sendrecv": [], "broadcast": [], "queue": []}
        targets = [("echo", echo_path), ("off", off_path), ("on", on_path)]
        for rep in range(params.reps):
            for key, path in targets[rep % 3 :] + targets[: rep % 3]:  # rotate: no run always goes first
                rt[key].append(ping_client(path, cc, rounds=params.noop_rounds, size=64))
            for key, path in (("echo", echo_path), ("off", off_path)):
                many[key].append(ping_client(path, cc, conns=64, seconds=params.clients_seconds, size=64))
            rates["sendrecv"].append(_pinned(cc, lambda: bench_load.sendrecv(off_path, params.messages)))
            rates["broadcast"].append(_pinned(cc, lambda: bench_load.broadcast(off_path, params.deliveries)))
            rates["queue"].append(bench_load.queue_throughput(params.queue_messages, cc, kc))
    report.figures += _figures(plane, rt, many, rates)


def _pct(runs: list[dict[str, Any]], key: str) -> Spread:
    return Spread.of([_us(r[key]) for r in runs])


def _figures(
    plane: str,
    rt: dict[str, list[dict[str, Any]]],
    many: dict[str, list[dict[str, Any]]],
    rates: dict[str, list[float]],
) -> list[Figure]:
    """Figures of one plane from the raw runs (names are short: the table must fit a terminal)."""
    out: list[Figure] = []
    p50, p50_echo = _pct(rt["off"], "p50_ns"), _pct(rt["echo"], "p50_ns")
    ratio = p50.median / p50_echo.median
    out.append(
        Figure("NOOP RTT p50", plane, "us", p50, PINGPONG, p50_echo, "<= 2x base", ratio <= 2.0, ratio)
    )
    p99, p99_echo = _pct(rt["off"], "p99_ns"), _pct(rt["echo"], "p99_ns")
    ratio = p99.median / p99_echo.median
    out.append(
        Figure("NOOP RTT p99", plane, "us", p99, PINGPONG, p99_echo, "<= 200 us", p99.median <= 200.0, ratio)
    )
    slow = Spread.of(
        [100.0 * (on["p50_ns"] / off["p50_ns"] - 1.0) for on, off in zip(rt["on"], rt["off"], strict=True)]
    )
    p50_on = _pct(rt["on"], "p50_ns")
    out.append(
        Figure(
            "tracing: NOOP p50 cost",
            plane,
            "%",
            slow,
            UNTRACED,
            p50,
            "<= 5%",
            slow.median <= 5.0,
            p50_on.median / p50.median,
            note=f"traced p50 {p50_on.median:.1f} us",
        )
    )
    q = Spread.of(rates["queue"])
    for key, name, unit in (
        ("sendrecv", "SEND->RECV 1:1", "msg/s"),
        ("broadcast", "BROADCAST x100", "deliv/s"),
    ):
        s = Spread.of(rates[key])
        out.append(
            Figure(name, plane, unit, s, QUEUE, q, ">= 100k/s", s.median >= 100_000, s.median / q.median)
        )
    tput = Spread.of([sum(r["counts"]) / (r["elapsed_ns"] / 1e9) for r in many["off"]])
    tput_echo = Spread.of([sum(r["counts"]) / (r["elapsed_ns"] / 1e9) for r in many["echo"]])
    out.append(
        Figure(
            "64 clients: calls/s",
            plane,
            "calls/s",
            tput,
            ECHO64,
            tput_echo,
            "reported",
            True,
            tput.median / tput_echo.median,
        )
    )
    p99m, p99m_echo = _pct(many["off"], "p99_ns"), _pct(many["echo"], "p99_ns")
    out.append(
        Figure(
            "64 clients: p99",
            plane,
            "us",
            p99m,
            ECHO64,
            p99m_echo,
            "reported",
            True,
            p99m.median / p99m_echo.median,
        )
    )
    fair = Spread.of([max(r["counts"]) / max(min(r["counts"]), 1) for r in many["off"]])
    fair_echo = Spread.of([max(r["counts"]) / max(min(r["counts"]), 1) for r in many["echo"]])
    starved = sum(1 for r in many["off"] for c in r["counts"] if c == 0)
    out.append(
        Figure(
            "64 clients: max/min",
            plane,
            "x",
            fair,
            ECHO64,
            fair_echo,
            "<= 2, none starve",
            fair.median <= 2.0 and starved == 0,
            note=f"{starved} starved client-runs",
        )
    )
    return out


def run(mode: str, quick: bool, planes: tuple[str, ...] = ("native", "python")) -> Report:
    """Measure everything; the returned Report holds figures, placement and notes."""
    place = placement(mode)
    params = Params.for_run(quick)
    report = Report(place, params, quick, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clove-bench-") as tmp:
        for plane in planes:
            measure_plane(plane, place, params, tmp, report)
    report.seconds = time.monotonic() - t0
    report.notes.append(
        "NOOP and 64-client figures: the C client uds_pingpong against the kernel process; SEND->RECV and "
        "BROADCAST: pipelined frames from a Python client pinned like the C one"
    )
    report.notes += [f"baseline '{k}': {v}" for k, v in BASELINES.items()]
    return report


def write_json(report: Report, out_dir: str | os.PathLike[str]) -> Path:
    """Write the report atomically (temp file + rename) as runtime-<time>.json and runtime-latest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_json(), indent=2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"runtime-{stamp}.json"
    for target in (path, out / "runtime-latest.json"):
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    return path


def _fmt(value: float, unit: str) -> str:
    if unit.endswith("/s"):
        return f"{value / 1000:,.0f}k"
    if unit == "%":
        return f"{value:+.1f}%"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.1f}"


def _fmt_spread(s: Spread, unit: str) -> str:
    return f"{_fmt(s.median, unit)} ({_fmt(s.min, unit)}..{_fmt(s.max, unit)})"


def render(report: Report) -> Any:
    """A rich Table of the figures (cells are Text, so brackets are never read as markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=f"clove-gym bench runtime ({'quick' if report.quick else 'full'}, {report.params.reps} reps)",
        caption=Text(f"{report.placement.describe()}. median (min..max) over repetitions"),
    )
    for col in ("Figure", "Plane", "Value", "Baseline", "Ratio", "Target", "Result"):
        table.add_column(col, justify="right" if col in ("Value", "Baseline", "Ratio") else "left")
    for f in report.figures:
        unit = "us" if f.unit == "%" else f.unit
        base = f"{_fmt_spread(f.baseline, unit)} {f.baseline_name}" if f.baseline else f.baseline_name
        ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "-"
        if f.target == "reported":
            verdict = Text("info", style="dim")
        else:
            verdict = Text("pass", style="green") if f.passed else Text("FAIL", style="red")
        value = f"{_fmt_spread(f.value, f.unit)} {'' if f.unit in ('%', 'x') else f.unit}".rstrip()
        table.add_row(Text(f.name), f.plane, Text(value), Text(base), ratio, Text(f.target), verdict)
    return table
