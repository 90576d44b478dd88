"""Trace analysis: workload statistics, the hardware sizes that follow from them, and a model replay.

`analyze()` returns plain dicts (JSON-ready); `write_outputs()` adds the table, the plots and the
parameter file the RTL build reads. Occupancies are sampled at arrivals (what an arriving request
sees), from the kernel's own `queue_ns`/`service_ns`, so they size the queues for the real runtime.
"""

from __future__ import annotations

import heapq
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.reader import Record

from .params import HwParams, write_atomic
from .workload import load_trace, replay, to_events

PCTS = (50, 99, 99.9)


def pct(values: Sequence[float]) -> dict[str, float]:
    """p50/p99/p99.9 and max (zeros for an empty sample)."""
    if not len(values):
        return {"p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0, "n": 0}
    arr = np.asarray(values, dtype=float)
    out = {f"p{p:g}": float(np.percentile(arr, p)) for p in PCTS}
    return out | {"max": float(arr.max()), "n": len(values)}


def pow2_at_least(x: float, lo: int = 2) -> int:
    return max(lo, 1 << max(0, math.ceil(math.log2(max(x, 1)))))


def occupancy_at_arrivals(intervals: Sequence[tuple[int, int]]) -> list[int]:
    """For each [start, end) interval (sorted by start): how many earlier ones are still open at its start."""
    ends: list[int] = []  # min-heap of the open intervals' ends
    out = []
    for start, end in intervals:
        while ends and ends[0] <= start:
            heapq.heappop(ends)
        out.append(len(ends))
        heapq.heappush(ends, end)
    return out


def trace_stats(records: Sequence[Record]) -> dict:
    """Arrival rates, concurrency, message sizes and queue/mailbox occupancy of one trace."""
    thinks = [r for r in records if r.kind == Kind.SYSCALL and r.opcode == Op.THINK]
    syscalls = [r for r in records if r.kind == Kind.SYSCALL]
    enq = [r for r in records if r.kind == Kind.MSG_ENQUEUE]
    deq = [r for r in records if r.kind == Kind.MSG_DEQUEUE]
    t0 = min(r.t_ns for r in records)
    span_s = max(1e-9, (max(r.t_ns for r in records) - t0) / 1e9)
    agents = sorted({r.agent_id for r in records if r.kind != Kind.EVENT})
    per_agent: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in thinks:
        per_agent[r.agent_id].append((r.t_ns, r.t_ns + r.queue_ns))
    queue_occ = [o for iv in per_agent.values() for o in occupancy_at_arrivals(sorted(iv))]
    inflight = sorted((r.t_ns, r.t_ns + r.queue_ns + r.service_ns) for r in syscalls)
    concurrency_agents = occupancy_at_arrivals(inflight)
    # messages: pending per receiver from enqueue to the matching dequeue (FIFO per sender/receiver pair)
    pending: dict[tuple[int, int], list[int]] = defaultdict(list)
    mbox_iv: dict[int, list[tuple[int, int]]] = defaultdict(list)
    all_iv: list[tuple[int, int]] = []
    for r in sorted(enq + deq, key=lambda r: (r.t_ns, r.index)):
        if r.kind == Kind.MSG_ENQUEUE:
            pending[(r.agent_id, r.peer_id)].append(r.t_ns)
        elif pending[(r.peer_id, r.agent_id)]:
            start = pending[(r.peer_id, r.agent_id)].pop(0)
            mbox_iv[r.agent_id].append((start, r.t_ns))
            all_iv.append((start, r.t_ns))
    mbox_occ = [o for iv in mbox_iv.values() for o in occupancy_at_arrivals(sorted(iv))]
    store_occ = occupancy_at_arrivals(sorted(all_iv))
    window = 10_000_000  # 10 ms windows for the peak arrival rate
    buckets = np.bincount([(r.t_ns - t0) // window for r in thinks]) if thinks else np.zeros(1)
    return {
        "records": len(records),
        "span_s": span_s,
        "agents": len(agents),
        "think_rate_per_s": len(thinks) / span_s,
        "think_peak_rate_per_s": float(buckets.max()) * 1e9 / window,
        "syscall_rate_per_s": len(syscalls) / span_s,
        "message_rate_per_s": len(enq) / span_s,
        "broadcast_share": sum(r.opcode == Op.BROADCAST for r in enq) / max(1, len(enq)),
        "concurrency_inflight": pct(concurrency_agents),
        "message_size": pct([r.req_size for r in enq]),
        "think_queue_ns": pct([r.queue_ns for r in thinks]),
        "queue_occupancy": pct(queue_occ),
        "mailbox_occupancy": pct(mbox_occ),
        "store_occupancy": pct(store_occ),
    }


def derive_params(stats: Sequence[dict], base: HwParams | None = None) -> HwParams:
    """Sizes from the worst trace: slots for p99.9 + one spare each, rounded up to powers of two."""
    base = base or HwParams()

    def worst(key: str, field: str = "p99.9") -> float:
        return max(s[key][field] for s in stats)

    agents = pow2_at_least(max(s["agents"] for s in stats))
    depth = pow2_at_least(worst("queue_occupancy") + 1, lo=4)
    mbox_depth = pow2_at_least(worst("mailbox_occupancy") + 1, lo=4)
    slots = pow2_at_least(max(worst("store_occupancy") + 1, mbox_depth))
    # a payload is a handle into the host's message buffers unless the messages themselves fit in 2 bytes
    payload_bits = 16 if worst("message_size", "p99") > 2 else int(8 * max(1, worst("message_size", "p99")))
    return HwParams(
        agents=agents,
        depth=depth,
        quantum=base.quantum,
        weights=base.weights if len(base.weights) == agents else (),
        max_cost=base.max_cost,
        bucket_rate=base.bucket_rate,
        bucket_burst=base.bucket_burst,
        slots=slots,
        mbox_depth=mbox_depth,
        payload_bits=payload_bits,
    ).validate()


def analyze(paths: Sequence[str], ns_per_cycle: float = 1000.0, max_gap: int = 64) -> dict:
    """Statistics per trace, derived parameters, and the golden-model replay with those parameters."""
    traces = {p: load_trace(p) for p in paths}
    stats = {p: trace_stats(t.records) for p, t in traces.items()}
    params = derive_params(list(stats.values()))
    replays = {}
    for p, t in traces.items():
        core = replay(params, to_events(t.records, params.agents, ns_per_cycle, max_gap))
        s = core.stats
        replays[p] = {
            "cycles": s.cycles,
            "decisions": s.decisions,
            "busy_cycles": s.busy_cycles,
            "decisions_per_busy_cycle": s.decisions / max(1, s.busy_cycles),
            "enq_refused": s.enq_refused,
            "sends": s.sends,
            "send_refused": s.send_refused,
            "recvs": s.recvs,
            "latency_cycles": pct(s.latencies),
        }
    return {"traces": stats, "params": json.loads(params.to_json())["params"], "replay": replays}


def table(result: dict) -> str:
    """A fixed-width text table of the headline numbers, one column per trace."""
    rows = [
        ("records", lambda s, r: f"{s['records']}"),
        ("agents", lambda s, r: f"{s['agents']}"),
        (
            "THINK/s (peak 10ms)",
            lambda s, r: f"{s['think_rate_per_s']:.1f} ({s['think_peak_rate_per_s']:.0f})",
        ),
        ("messages/s", lambda s, r: f"{s['message_rate_per_s']:.1f}"),
        ("in-flight p50/p99", lambda s, r: "{p50:.0f}/{p99:.0f}".format(**s["concurrency_inflight"])),
        ("msg bytes p50/p99", lambda s, r: "{p50:.0f}/{p99:.0f}".format(**s["message_size"])),
        ("queue occ p50/p99/p99.9", lambda s, r: _p3(s["queue_occupancy"])),
        ("mailbox occ p50/p99/p99.9", lambda s, r: _p3(s["mailbox_occupancy"])),
        ("store occ p50/p99/p99.9", lambda s, r: _p3(s["store_occupancy"])),
        ("model decisions/busy cycle", lambda s, r: f"{r['decisions_per_busy_cycle']:.3f}"),
        ("model latency p50/p99 (cyc)", lambda s, r: "{p50:.0f}/{p99:.0f}".format(**r["latency_cycles"])),
        ("model refused enq/send", lambda s, r: f"{r['enq_refused']}/{r['send_refused']}"),
    ]
    names = [Path(p).name for p in result["traces"]]
    width = max(12, *(len(n) for n in names))
    lines = ["metric".ljust(30) + "".join(n.rjust(width + 2) for n in names)]
    for label, fn in rows:
        cells = [fn(result["traces"][p], result["replay"][p]) for p in result["traces"]]
        lines.append(label.ljust(30) + "".join(c.rjust(width + 2) for c in cells))
    lines.append("derived parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(result["params"].items())))
    return "\n".join(lines) + "\n"


def _p3(d: dict) -> str:
    return f"{d['p50']:.0f}/{d['p99']:.0f}/{d['p99.9']:.1f}"


def plot(paths: Sequence[str], out: Path) -> Path:
    """Arrival timeline, occupancy CDFs and message-size histogram, one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for path in paths:
        recs = load_trace(path).records
        t0 = min(r.t_ns for r in recs)
        ts = [(r.t_ns - t0) / 1e9 for r in recs if r.kind == Kind.SYSCALL and r.opcode == Op.THINK]
        axes[0].hist(ts, bins=100, histtype="step", label=Path(path).name)
        per_agent: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for r in recs:
            if r.kind == Kind.SYSCALL and r.opcode == Op.THINK:
                per_agent[r.agent_id].append((r.t_ns, r.t_ns + r.queue_ns))
        occ = sorted(o for iv in per_agent.values() for o in occupancy_at_arrivals(sorted(iv)))
        if occ:
            axes[1].step(occ, np.arange(1, len(occ) + 1) / len(occ), label=Path(path).name)
        sizes = [r.req_size for r in recs if r.kind == Kind.MSG_ENQUEUE]
        if sizes:
            axes[2].hist(sizes, bins=50, histtype="step", log=True, label=Path(path).name)
    axes[0].set(title="THINK arrivals", xlabel="s", ylabel="per bin")
    axes[1].set(title="per-agent queue occupancy at arrival (CDF)", xlabel="requests queued", ylabel="CDF")
    axes[2].set(title="message sizes", xlabel="bytes", ylabel="count")
    for ax in axes:
        ax.legend(fontsize="small")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)
    return out


def write_outputs(result: dict, paths: Sequence[str], out_dir: Path, params_out: Path | None = None) -> dict:
    """analysis.json, analysis.txt, analysis.png and the parameter file; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    params = HwParams.from_json(json.dumps({"version": 1, "params": result["params"]}))
    files = {
        "json": write_atomic(out_dir / "analysis.json", json.dumps(result, indent=2, sort_keys=True)),
        "table": write_atomic(out_dir / "analysis.txt", table(result)),
        "plot": plot(paths, out_dir / "analysis.png"),
        "params": params.save(params_out or out_dir / "params.json"),
    }
    return {k: str(v) for k, v in files.items()}
