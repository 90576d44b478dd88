"""`clove-gym hw report`: the figures of issue 4 in one JSON + Markdown report.

Latencies, decision rate and harness speed are measured now on the Verilated RTL; the K-wide builds'
decisions per cycle are measured now on the wide RTL (amaranth.sim); builds are read
from their report.json files under hw/build/ (run `clove-gym hw build` first; the newest build per
board and agent count is used); the software scheduler is timed now on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clove_gym.sim.params import HwParams, write_atomic
from clove_gym.sim.stimulus import random_cycles
from clove_gym.sim.wide import WideParams

from . import measure
from .build import rtl_digest
from .verilate import BUILD
from .wide_build import wide_digest


def latest_builds(build_root: Path = BUILD) -> list[dict]:
    """Every build of the current RTL (all seeds, so none is hidden), by board, agents, seed."""
    digest = rtl_digest()
    found = [json.loads(f.read_text()) for f in build_root.glob("*/report.json")]
    found = [r for r in found if r.get("rtl") == digest]
    return sorted(found, key=lambda r: (r["board"], r["params"]["agents"], r["seed"], r["placer"]))


def latest_wide_builds(build_root: Path = BUILD) -> list[dict]:
    """Every build of the current wide RTL (hw build --width K), by board, width, agents, seed."""
    digest = wide_digest()
    found = [json.loads(f.read_text()) for f in build_root.glob("*/report.json")]
    found = [r for r in found if "width" in r and r.get("rtl") == digest]
    return sorted(found, key=lambda r: (r["board"], r["width"], r["params"]["agents"], r["seed"]))


def wide_figures(best_c: float, python: float, build_root: Path = BUILD) -> dict:
    """Decisions/s of each wide build: measured decisions per cycle (backlogged RTL replay) x its Fmax."""
    rows, rates = [], {}
    for b in latest_wide_builds(build_root):
        p = WideParams(HwParams(**dict(b["params"], weights=tuple(b["params"]["weights"]))), b["width"])
        key = (p.base, p.width, b.get("structure", "rank"))
        if key not in rates:
            rates[key] = measure.wide_decisions_per_cycle(p, structure=key[2])
        fmax = min(c["mhz"] for c in b["fmax"].values())
        dps = rates[key]["decisions_per_cycle"] * fmax * 1e6
        rows.append(
            {
                "board": b["board"],
                "width": b["width"],
                "agents": p.agents,
                "depth": p.depth,
                "structure": key[2],
                "seed": b["seed"],
                "constraint_mhz": b["constraint_mhz"],
                "fmax_mhz": fmax,
                "logic_used": b["logic_used"],
                "logic_percent": b["logic_percent"],
                "build_seconds": b["build_seconds"],
                "decisions_per_cycle": rates[key]["decisions_per_cycle"],
                "decisions_per_s": dps,
                "vs_c": dps / best_c,
                "vs_python": dps / python,
            }
        )
    best = max(rows, key=lambda r: r["decisions_per_s"], default=None)
    return {"builds": rows, "replays": [dict(v, structure=k[2]) for k, v in rates.items()], "best": best}


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
    wide = wide_figures(c_twin["median"], software["median"])
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
        "wide": wide,
        "commands": {
            "latency": "hw/measure.py rtl_latencies (directed stimulus on the Verilated Core)",
            "harness": "replay of 50,000 constrained-random cycles x10 by the PGO-built direct harness, every"
            " cycle of every pass checked against the golden model inside the harness, 3 runs",
            "software": f"runtime/scheduler.py, {params.agents} agents always backlogged, 200,000 decisions x5",
            "c": f"hw/harness/drr.c (C twin, -O2), {params.agents} agents backlogged, 20,000,000 decisions x5",
            "wide": "clove-gym hw build --board B --width K --params P --seed S --target-mhz F; decisions per cycle"
            " from hw/measure.py wide_decisions_per_cycle (400 backlogged cycles of the wide RTL in"
            " amaranth.sim, K enqueues per cycle, consumer takes K, every cycle checked against sim/wide.py)",
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
    w = r.get("wide") or {}
    if w.get("builds"):
        lines += ["", "## K-wide scheduler (unit turns: K decisions of the same DRR rule per cycle)", ""]
        for rep in w["replays"]:
            lines.append(
                f"- backlogged replay of the wide RTL, K={rep['width']}: **{rep['decisions_per_cycle']:.3f}"
                f" decisions/cycle** (min {rep['min_per_cycle']} in a cycle, {rep['cycles']} cycles)"
            )
        best = w["best"]
        lines.append(
            f"- best wide build: **{best['decisions_per_s'] / 1e6:.1f} M decisions/s** (K={best['width']},"
            f" {best['fmax_mhz']:.1f} MHz, seed {best['seed']}): **{best['vs_c']:.1f}x** the C twin's median"
            f" in this run, {best['vs_python']:.0f}x the Python one (goal >= 10x)"
        )
        lines += [
            "",
            "| board | K | agents | depth | lanes | logic | Fmax (MHz) | constraint | seed | decisions/cycle"
            " | M decisions/s | x C | build s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for b in w["builds"]:
            lines.append(
                f"| {b['board']} | {b['width']} | {b['agents']} | {b['depth']} | {b['structure']} |"
                f" {b['logic_used']} ({b['logic_percent']}%) | {b['fmax_mhz']:.1f} | {b['constraint_mhz']} MHz |"
                f" {b['seed']} | {b['decisions_per_cycle']:.2f} | {b['decisions_per_s'] / 1e6:.1f} |"
                f" {b['vs_c']:.1f} | {b['build_seconds']} |"
            )
    return "\n".join(lines) + "\n"


def write(r: dict, out: Path) -> dict:
    return {
        "json": str(write_atomic(out / "report.json", json.dumps(r, indent=2))),
        "markdown": str(write_atomic(out / "report.md", markdown(r))),
    }
