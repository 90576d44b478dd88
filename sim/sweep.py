"""Design-space sweep: queue depth x agent slots x policy against drop rate and latency.

The THINK arrivals of the traces are replayed through the golden model against a consumer slower than
the scheduler, with time scaled so the mean offered load is `load` of it: below 1 a good policy
keeps drops near zero, and the bursts decide how much depth that needs. Only THINK requests are
swept: the mailboxes are sized by `analyze` from the message occupancy.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.format import Kind

from .model import POLICIES
from .params import HwParams, write_atomic
from .workload import Event, load_trace, replay, to_events


def sweep(
    paths: Sequence[str],
    depths: Sequence[int] = (2, 4, 8, 16, 32),
    agents: Sequence[int] = (4, 8, 16, 32),
    policies: Sequence[str] = POLICIES,
    load: float = 0.9,
    capacity: float = 0.125,
) -> list[dict]:
    """One row per (policy, agents, depth). The consumer takes a dispatch on `capacity` of the cycles
    (the enqueue port takes one request per cycle, so bursts arrive up to 1/capacity times faster
    than they are served); each trace's time is scaled so its THINK arrivals offer `load` x capacity
    requests per cycle on average (gaps kept, not clipped). Latencies are in cycles."""
    if not 0 < load <= 4:
        raise ValueError(f"load={load}: must be in (0, 4]")
    thinks = []
    for p in paths:
        recs = [r for r in load_trace(p).records if r.kind == Kind.SYSCALL and r.opcode == Op.THINK]
        if len(recs) < 2:
            raise ValueError(f"{p}: fewer than 2 THINK requests, nothing to sweep over")
        thinks.append(recs)
    rows = []
    for n in agents:
        events: list[Event] = []
        for recs in thinks:
            span = recs[-1].t_ns - recs[0].t_ns
            base = events[-1].cycle + 1 if events else 0
            ns_per_cycle = max(1.0, span * load * capacity / len(recs))
            evs = to_events(recs, n, ns_per_cycle=ns_per_cycle, max_gap=1 << 40)
            events += [Event(e.cycle + base, e.enq) for e in evs]
        for policy, depth in itertools.product(policies, depths):
            s = replay(HwParams(agents=n, depth=depth), events, policy, capacity).stats
            lat = np.asarray(s.latencies or [0])
            rows.append(
                {
                    "policy": policy,
                    "agents": n,
                    "depth": depth,
                    "offered": s.enq_offered,
                    "drop_rate": s.enq_refused / max(1, s.enq_offered),
                    "latency_p50": float(np.percentile(lat, 50)),
                    "latency_p99": float(np.percentile(lat, 99)),
                    "load": load,
                    "capacity": capacity,
                }
            )
    return rows


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot(rows: list[dict], out: Path) -> Path:
    """Drop rate and p99 latency against depth, one line per (policy, agents)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    keys = sorted({(r["policy"], r["agents"]) for r in rows})
    for policy, n in keys:
        sel = sorted(
            (r for r in rows if r["policy"] == policy and r["agents"] == n), key=lambda r: r["depth"]
        )
        style = {"drr": "-", "fifo": "--", "sp": ":"}[policy]
        label = f"{policy} N={n}"
        ax1.plot([r["depth"] for r in sel], [r["drop_rate"] for r in sel], style, marker="o", label=label)
        ax2.plot([r["depth"] for r in sel], [r["latency_p99"] for r in sel], style, marker="o", label=label)
    ax1.set(xscale="log", xlabel="queue depth", ylabel="drop rate", title="enqueue refusals")
    ax2.set(
        xscale="log", yscale="log", xlabel="queue depth", ylabel="p99 cycles", title="enqueue-to-dispatch p99"
    )
    ax1.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out)
    return out


def write_outputs(rows: list[dict], out_dir: Path) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": write_atomic(out_dir / "sweep.csv", to_csv(rows)),
        "json": write_atomic(out_dir / "sweep.json", json.dumps(rows, indent=2)),
        "plot": plot(rows, out_dir / "sweep.png"),
    }
    return {k: str(v) for k, v in files.items()}
