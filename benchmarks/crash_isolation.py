"""Crash isolation at scale (issue 3): N workers doing steady work, K crash at once, who keeps going?

The same scenario runs four ways in one call of `run()`, one after the other, with the same seeded
choice of victims:
  * agents: sandboxed agent processes under the kernel, `restart_policy="on-failure"`; a crash is a
    SIGKILL of the agent's process from outside. Progress comes from the kernel's trace (every STORE of
    `isolation/progress/<name>`, timestamped by the kernel), restarts from the trace's
    AGENT_RESTARTING events and from LIST;
  * threads (SIGKILL): the workers are threads of one process; the crash is the same SIGKILL sent to
    each victim's task id;
  * threads (exception): each victim raises an uncaught exception instead (the only crash a thread
    survives alone);
  * multiprocessing.Pool: one long task per worker process; the crash is a SIGKILL of the worker.
For every mode: survivors that kept going without a gap (counter contiguous, no stall longer than
`gap_bound_s`), victims that came back and how fast, and the work lost over the observation window
(steps not done, against the median rate of the calm window before the crash).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from clove_gym.benchmarks.agents import script
from clove_gym.benchmarks.bench_server import KernelProcess
from clove_gym.benchmarks.isolation_inproc import GAP, LAST, InprocRun, start_pool, start_threads
from clove_gym.benchmarks.isolation_probes import Stats
from clove_gym.runtime.client import Client
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.sandbox.pidfds import children
from clove_gym.runtime.trace.format import EVENT_CODES
from clove_gym.runtime.trace.reader import iter_records

PROGRESS = "isolation/progress/"
PARAMS_KEY = "isolation/crash/params"
MODES = ("agents", "threads-sigkill", "threads-exception", "pool")
CRASH = {
    "agents": "SIGKILL of the agent process (outside)",
    "threads-sigkill": "SIGKILL of the victim thread's task id",
    "threads-exception": "uncaught exception in the victim thread",
    "pool": "SIGKILL of the victim's worker process",
}


@dataclass(frozen=True)
class Scenario:
    """Scale and timing of one run; `check()` rejects impossible settings with a clear message."""

    workers: int = 100
    victims: int = 20
    seed: int = 1
    step_s: float = 0.01
    calm_s: float = 1.0
    observe_s: float = 1.0  # after every victim is back (or the restart timeout passed)
    restart_timeout_s: float = 30.0
    gap_bound_s: float = 0.5
    modes: tuple[str, ...] = MODES

    def check(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 2:
            raise ValueError(f"workers: expected an integer >= 2, got {self.workers!r}")
        if isinstance(self.victims, bool) or not isinstance(self.victims, int) or self.victims < 1:
            raise ValueError(f"victims: expected an integer >= 1, got {self.victims!r}")
        if self.victims >= self.workers:
            raise ValueError(f"victims: {self.victims} must be fewer than workers ({self.workers})")
        for name in ("step_s", "calm_s", "observe_s", "restart_timeout_s", "gap_bound_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
        if self.step_s * 5 > self.gap_bound_s:
            raise ValueError(f"gap_bound_s: {self.gap_bound_s} must be at least 5 steps ({self.step_s} s)")
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes: expected some of {', '.join(MODES)}, got {list(self.modes)!r}")

    def victim_indices(self) -> list[int]:
        return sorted(random.Random(self.seed).sample(range(self.workers), self.victims))


@dataclass
class ModeResult:
    mode: str
    crash: str
    workers: int
    victims: list[int]
    survivors_ok: int  # kept going, counter contiguous, no gap over the bound
    survivor_gap_calm_ms: float  # largest gap of any survivor in the calm window
    survivor_gap_crash_ms: float  # ... and from the crash to the end
    victims_back: int
    restart_ms: Stats | None
    backoff_ms: Stats | None
    state_lost: int | None  # counter values a restarted victim did not resume from (None: no restart)
    work_lost_steps: float
    work_lost_pct: float
    same_ids: bool | None = None  # LIST shows every victim under its spawn id after the restart
    conn_id_changes: list[str] = field(default_factory=list)  # connections stamped with another id
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class CrashReport:
    scenario: Scenario
    results: list[ModeResult] = field(default_factory=list)
    seconds: float = 0.0


def _work_lost(
    steps_calm: list[int], steps_after: list[int], calm_s: float, window_s: float
) -> tuple[float, float]:
    """Steps not done in the window against the median calm rate, absolute and as % of the expected."""
    rate = statistics.median(steps_calm) / calm_s
    expected = rate * window_s
    lost = sum(max(0.0, expected - s) for s in steps_after)
    return lost, 100.0 * lost / (expected * len(steps_after)) if expected else 0.0


# ---- agents under the kernel --------------------------------------------------------------------------


def _timelines(trace: str) -> tuple[dict[str, list[tuple[int, int, int, int]]], dict[int, list[int]]]:
    """From the trace: per worker name the (t_ns, n, inc, id) of each progress STORE, and per agent id
    the delay_ms of each AGENT_RESTARTING event."""
    lines: dict[str, list[tuple[int, int, int, int]]] = {}
    backoffs: dict[int, list[int]] = {}
    restarting = EVENT_CODES["AGENT_RESTARTING"]
    for rec in iter_records(trace):
        if rec.kind == 0 and rec.opcode == Op.STORE and PROGRESS.encode() in rec.req[:64]:
            req = json.loads(rec.req)
            value = req["value"]
            name = req["key"][len(PROGRESS) :]
            lines.setdefault(name, []).append((rec.t_ns, value["n"], value["inc"], value["id"]))
        elif rec.kind == 1 and rec.opcode == restarting:
            data = json.loads(rec.req)["data"]
            backoffs.setdefault(data["agent_id"], []).append(data["delay_ms"])
    return lines, backoffs


def _max_gap(times: list[int], start: int, end: int) -> int:
    """Largest interval between consecutive times in [start, end], counting the edges: the last point
    before `start` to the first after it, and the last point to `end`."""
    before = [t for t in times if t < start]
    inside = [t for t in times if start <= t <= end]
    points = ([before[-1]] if before else [start]) + inside + [end]
    return max(b - a for a, b in zip(points, points[1:], strict=False))


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"crash scenario: {what} within {timeout} s")
        time.sleep(0.05)


def run_agents(sc: Scenario, victims: list[int]) -> ModeResult:
    names = [f"w{i:03d}" for i in range(sc.workers)]
    with tempfile.TemporaryDirectory(prefix="clove-crash-") as tmp:
        os.chmod(tmp, 0o755)  # sandboxed agents run as other uids: they must reach the socket
        sock, trace = os.path.join(tmp, "kernel.sock"), os.path.join(tmp, "kernel.clvtrace")
        with KernelProcess(sock, trace_path=trace), Client(sock) as client:
            client.store(PARAMS_KEY, {"step_s": sc.step_s})
            ids = {}
            for name in names:
                reply = client.spawn(
                    name, script("isolation_worker.py"), sandboxed=True, restart_policy="on-failure"
                )
                if "id" not in reply:
                    raise RuntimeError(f"crash scenario: SPAWN {name}: {reply.get('error', reply)}")
                ids[name] = reply["id"]
            _wait(
                lambda: client.list_keys(PROGRESS)["count"] >= sc.workers,
                sc.restart_timeout_s + sc.workers * 0.5,
                "not every worker made progress",
            )
            time.sleep(sc.calm_s)
            listed = {a["name"]: a for a in client.list_agents()}
            targets = {}
            for i in victims:
                kids = children(listed[names[i]]["pid"])
                if len(kids) != 1:
                    raise RuntimeError(
                        f"crash scenario: {names[i]}: expected one agent under its init, got {kids}"
                    )
                targets[i] = kids[0]
            kill_ns = {}
            for i in victims:
                kill_ns[i] = time.monotonic_ns()
                os.kill(targets[i], signal.SIGKILL)

            def back() -> bool:
                return all(
                    client.fetch(PROGRESS + names[i]).get("value", {}).get("inc", 0) >= 1 for i in victims
                )

            try:
                _wait(back, sc.restart_timeout_s, "not every victim came back")
            except RuntimeError as exc:
                restart_note = str(exc)
            else:
                restart_note = ""
            time.sleep(sc.observe_s)
            end_ns = time.monotonic_ns()
            after = {a["name"]: a for a in client.list_agents()}
        lines, backoffs = _timelines(trace)
    return _analyse_agents(sc, names, ids, victims, kill_ns, end_ns, lines, backoffs, after, restart_note)


def _analyse_agents(
    sc: Scenario,
    names: list[str],
    ids: dict[str, int],
    victims: list[int],
    kill_ns: dict[int, int],
    end_ns: int,
    lines: dict[str, list[tuple[int, int, int, int]]],
    backoffs: dict[int, list[int]],
    after: dict[str, dict[str, Any]],
    restart_note: str,
) -> ModeResult:
    """The agents' ModeResult from their progress timelines (t_ns, n, inc, connection id)."""
    first_kill = min(kill_ns.values())
    calm_start = first_kill - int(sc.calm_s * 1e9)
    vset = set(victims)
    ok, gaps_calm, gaps_crash, steps_calm, steps_after = 0, [], [], [], []
    restart_ms, relaunch_ms, lost_values, id_changes = [], [], 0, []
    for i, name in enumerate(names):
        line = lines.get(name, [])
        times = [t for t, *_ in line]
        steps_calm.append(sum(1 for t in times if calm_start <= t < first_kill))
        steps_after.append(sum(1 for t in times if first_kill <= t <= end_ns))
        for inc in sorted({p[2] for p in line}):
            stamped = sorted({p[3] for p in line if p[2] == inc} - {ids[name]})
            if stamped:
                id_changes.append(f"{name} incarnation {inc}: spawn id {ids[name]}, connection id {stamped}")
        if i in vset:
            old = [p for p in line if p[2] == 0]  # a STORE sent just before the SIGKILL may land after it
            new = [p for p in line if p[2] >= 1]
            if new:
                restart_ms.append((new[0][0] - kill_ns[i]) / 1e6)
                lost_values += old[-1][1] - (new[0][1] - 1) if old else 0
                delay = backoffs.get(ids[name], [])
                if delay:
                    relaunch_ms.append(restart_ms[-1] - delay[0])
            continue
        contiguous = all(b[1] == a[1] + 1 and b[2] == a[2] for a, b in zip(line, line[1:], strict=False))
        gaps_calm.append(_max_gap(times, calm_start, first_kill) / 1e6)
        gaps_crash.append(_max_gap(times, first_kill, end_ns) / 1e6)
        ok += contiguous and gaps_crash[-1] <= sc.gap_bound_s * 1e3
    lost, pct = _work_lost(steps_calm, steps_after, sc.calm_s, (end_ns - first_kill) / 1e9)
    delays = [float(d) for i in victims for d in backoffs.get(ids[names[i]], [])]
    notes = [restart_note] if restart_note else []
    if relaunch_ms:
        notes.append(
            f"restart = backoff (AGENT_RESTARTING delay_ms) + relaunch to first progress; relaunch p50 "
            f"{Stats.of(relaunch_ms).p50:,.0f} ms, max {max(relaunch_ms):,.0f} ms"
        )
    if id_changes:
        notes.append(
            f"{len(id_changes)} connections were stamped with an id other than their agent's spawn id (kernel "
            f"race: the process connected before the kernel registered its pid): {'; '.join(id_changes[:4])}"
        )
    restarted = [after.get(names[i], {}).get("restarts", 0) for i in victims]
    notes.append(
        f"LIST after the crash: {sum(1 for r in restarted if r == 1)}/{len(victims)} victims restarted once, "
        f"{sum(1 for a in after.values() if a['running'])}/{sc.workers} running"
    )
    return ModeResult(
        "agents",
        CRASH["agents"],
        sc.workers,
        victims,
        ok,
        max(gaps_calm),
        max(gaps_crash),
        len(restart_ms),
        Stats.of(restart_ms) if restart_ms else None,
        Stats.of(delays) if delays else None,
        lost_values,
        lost,
        pct,
        same_ids=all(after.get(names[i], {}).get("id") == ids[names[i]] for i in victims),
        conn_id_changes=id_changes,
        notes=notes,
        facts={"window_s": (end_ns - first_kill) / 1e9, "relaunch_ms": relaunch_ms},
    )


# ---- threads and Pool ---------------------------------------------------------------------------------


def run_inproc(sc: Scenario, victims: list[int], mode: str) -> ModeResult:
    run: InprocRun = (
        start_pool(sc.workers, sc.step_s)
        if mode == "pool"
        else start_threads(sc.workers, sc.step_s, mode.removeprefix("threads-"))
    )
    shared = run.shared
    try:
        _wait(lambda: min(shared.counters()) > 0, 30.0 + sc.workers * 0.1, "not every worker started")
        time.sleep(0.1)
        shared.reset_gaps()
        calm0 = shared.counters()
        time.sleep(sc.calm_s)
        calm1 = shared.counters()
        gaps_calm = [shared.get(i, GAP) / 1e6 for i in range(sc.workers)]
        shared.reset_gaps()
        kill_ns = run.crash(victims)
        time.sleep(sc.observe_s + 1.0)  # about the agents' window: their backoff (1 s) + observe_s
        end_ns = time.monotonic_ns()
        end = shared.counters()
        lasts = [shared.get(i, LAST) for i in range(sc.workers)]
        gaps_crash = [max(shared.get(i, GAP), end_ns - lasts[i]) / 1e6 for i in range(sc.workers)]
    finally:
        facts = run.finish()
    window_s = (end_ns - kill_ns[0]) / 1e9
    steps_calm = [b - a for a, b in zip(calm0, calm1, strict=True)]
    steps_after = [b - a for a, b in zip(calm1, end, strict=True)]
    lost, pct = _work_lost(steps_calm, steps_after, sc.calm_s, window_s)
    vset = set(victims)
    survivors = [i for i in range(sc.workers) if i not in vset]
    ok = sum(1 for i in survivors if gaps_crash[i] <= sc.gap_bound_s * 1e3)
    notes = []
    if mode == "pool":
        notes.append(
            f"{facts['tasks_lost']} in-flight tasks lost (their AsyncResult never completes); the pool started "
            f"{facts['workers_replaced']} new workers that ran nothing; close()+join() "
            + (f"hung (> {facts['join_wait_s']} s), terminate() needed" if facts["join_hung"] else "returned")
        )
    else:
        notes.append(f"process: {facts['process_exit']}")
    return ModeResult(
        mode,
        CRASH[mode],
        sc.workers,
        victims,
        ok,
        max(gaps_calm[i] for i in survivors),
        max(gaps_crash[i] for i in survivors),
        0,
        None,
        None,
        None,
        lost,
        pct,
        notes=notes,
        facts={**facts, "window_s": window_s},
    )


def run(sc: Scenario | None = None) -> CrashReport:
    """Run the scenario in every requested mode; raises ValueError for bad settings."""
    sc = sc or Scenario()
    sc.check()
    victims = sc.victim_indices()
    report = CrashReport(sc)
    t0 = time.monotonic()
    for mode in sc.modes:
        report.results.append(run_agents(sc, victims) if mode == "agents" else run_inproc(sc, victims, mode))
    report.seconds = time.monotonic() - t0
    return report
