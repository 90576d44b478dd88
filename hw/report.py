"""`clove-gym hw report`: the figures of issue 4 in one JSON + Markdown report.

Latencies, decision rate and harness speed are measured now on the Verilated RTL; builds are read
from their report.json files under hw/build/ (run `clove-gym hw build` first; the newest build per
board and agent count is used); the software scheduler is timed now on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clove_gym.sim.params import HwParams, write_atomic
from clove_gym.sim.stimulus import random_cycles

from . import measure
from .build import rtl_digest
from .verilate import BUILD


def latest_builds(build_root: Path = BUILD) -> list[dict]:
    """Every build of the current RTL (all seeds, so none is hidden), by board, agents, seed."""
    digest = rtl_digest()
    found = [json.loads(f.read_text()) for f in build_root.glob("*/report.json")]
    found = [r for r in found if r.get("rtl") == digest]
    return sorted(found, key=lambda r: (r["board"], r["params"]["agents"], r["seed"], r["placer"]))


def make_report(
    params: HwParams, traces: Sequence[str], ns_per_cycle: float = 2000.0, max_gap: int = 16
) -> dict:
    lat = measure.rtl_latencies(params)
    rate = measure.rtl_decision_rate(params, traces, ns_per_cycle, max_gap) if traces else None
    cycles = list(random_cycles(params, 50_000, seed=1))
    harness = measure.harness_speed(params, cycles, repeat=10)
    software = measure.software_decisions_per_s(params.agents)
    c_twin = measure.c_decisions_per_s(params.agents)
    best = max(software["median"], c_twin["median"])
    builds = latest_builds()
    fmax = {
        (b["board"], b["params"]["agents"]): min(c["mhz"] for c in b["fmax"].values())
        for b in builds
        if b["fmax"]
    }
    best_fmax = max(fmax.values(), default=None)
    rtl_dps = best_fmax * 1e6 if best_fmax else None  # one decision per cycle
    return {
        "params": json.loads(params.to_json())["params"],
        "latency": lat,
        "decision_rate": rate,
        "verilator_harness_cycles_per_s": harness,
        "software_decisions_per_s": {"python": software, "c": c_twin},
        "builds": builds,
        "rtl_decisions_per_s_at_fmax": rtl_dps,
        "rtl_vs_best_software": rtl_dps / best if rtl_dps else None,
        "rtl_vs_python": rtl_dps / software["median"] if rtl_dps else None,
        "commands": {
            "latency": "hw/measure.py rtl_latencies (directed stimulus on the Verilated Core)",
            "harness": "replay of 50,000 constrained-random cycles x10 by the PGO-built direct harness, every"
            " cycle of every pass checked against the golden model inside the harness, 3 runs",
            "software": f"runtime/scheduler.py, {params.agents} agents always backlogged, 200,000 decisions x5",
            "c": f"hw/harness/drr.c (C twin, -O2), {params.agents} agents backlogged, 20,000,000 decisions x5",
        },
    }


def markdown(r: dict) -> str:
    lines = ["# Hardware report (issue 4)", ""]
    lat = r["latency"]
    lines += [
        f"- enqueue-to-dispatch: **{lat['enqueue_to_dispatch_cycles']} cycle(s)** (goal <= 3)",
        f"- send-to-recv data: **{lat['send_to_recv_data_cycles']} cycles** (goal <= 3)",
    ]
    if r["decision_rate"]:
        d = r["decision_rate"]
        lines.append(
            f"- decisions per busy cycle in trace replay: **{d['decisions_per_busy_cycle']:.3f}**"
            f" ({d['decisions']} decisions / {d['busy_cycles']} busy cycles; goal >= 0.95)"
        )
    h = r["verilator_harness_cycles_per_s"]
    lines.append(
        f"- Verilator direct harness: **{h['median'] / 1e6:.2f} M cycles/s** median (min {h['min'] / 1e6:.2f},"
        f" max {h['max'] / 1e6:.2f}, n={h['n']}; goal >= 1 M)"
    )
    s = r["software_decisions_per_s"]["python"]
    for name, s in r["software_decisions_per_s"].items():
        lines.append(f"- software scheduler ({name}): **{s['median'] / 1e6:.3f} M decisions/s** median"
                     f" (min {s['min'] / 1e6:.3f}, max {s['max'] / 1e6:.3f}, n={s['n']})")  # fmt: skip
    if r["rtl_decisions_per_s_at_fmax"]:
        lines.append(
            f"- RTL at its best Fmax: **{r['rtl_decisions_per_s_at_fmax'] / 1e6:.1f} M decisions/s**:"
            f" **{r['rtl_vs_best_software']:.1f}x** the best software scheduler (C),"
            f" {r['rtl_vs_python']:.0f}x the Python one (goal >= 10x the best)"
        )
    lines += [
        "",
        "| board | agents | depth | logic | Fmax (MHz) | constraint | seed | placer | build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in r["builds"]:
        f = ", ".join(f"{c['mhz']:.1f}" for c in b["fmax"].values())
        lines.append(
            f"| {b['board']} | {b['params']['agents']} | {b['params']['depth']} | {b['logic_used']}"
            f" ({b['logic_percent']}%) | {f} | {b.get('constraint_mhz', '?')} MHz | {b['seed']} |"
            f" {b.get('placer', 'heap')} | {b['build_seconds']} |"
        )
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path) -> dict:
    return {
        "json": str(write_atomic(out / "report.json", json.dumps(r, indent=2))),
        "markdown": str(write_atomic(out / "report.md", markdown(r))),
    }
