"""Spawn and kill latency of the sandbox, each figure next to its baseline from the same run.

`python -m clove_gym.runtime.sandbox.bench [N]` prints the table; `measure(n)` returns it for the
`clove-gym bench isolation` report. Spawn latency is "spawn() called" to "first statement of the agent"
(CLOCK_MONOTONIC is shared across the namespaces); kill latency is kill(timeout=0) until it returns with
the tree dead and cgroup, mounts and pidfd released. No CPU pinning: the machine is shared, so the load
average is printed with the figures.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .launcher import Launcher
from .spec import SpawnSpec

_FIRST = "import os, time\nos.write(1, str(time.monotonic_ns()).encode())\n"


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "n": len(ordered),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "min": ordered[0],
        "max": ordered[-1],
    }


def _first_instruction(start: Callable[[int], Callable[[], object]]) -> float:
    """ms from calling `start(stdout_fd)` to the agent's first statement (it writes its clock)."""
    r, w = os.pipe()
    t0 = time.monotonic_ns()
    finish = start(w)
    os.close(w)
    data = b"".join(iter(lambda: os.read(r, 64), b""))
    os.close(r)
    finish()
    return (int(data) - t0) / 1e6


def _spawns(launcher: Launcher, script: str, n: int, pause: float, **kw: Any) -> tuple[list[float], int]:
    warm = 0
    out = []
    for i in range(n):
        spec = SpawnSpec(i + 1, f"bench{i}", [sys.executable, script], {}, None, **kw)
        started = []

        def start(fd: int, spec: SpawnSpec = spec, started: list = started) -> Callable[[], object]:
            spec.stdout_fd = fd
            started.append(launcher.spawn(spec))
            return lambda: started[0].wait(30)

        out.append(_first_instruction(start))
        warm += bool(started[0].isolation.get("warm_slot"))
        time.sleep(pause)
    return out, warm


def _popen(argv: list[str], n: int) -> list[float]:
    def start(fd: int) -> Callable[[], object]:
        return subprocess.Popen(argv, stdout=fd).wait

    return [_first_instruction(start) for _ in range(n)]


def _wall(argv: list[str], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.monotonic_ns()
        subprocess.run(argv, check=True)
        out.append((time.monotonic_ns() - t0) / 1e6)
    return out


def measure(n: int = 50) -> dict[str, dict[str, Any]]:
    """Every figure of the table, as {name: summary (+ notes)}."""
    rows: dict[str, dict[str, Any]] = {}
    workdir = tempfile.mkdtemp(prefix="clove-gym-bench-")
    os.chmod(workdir, 0o755)
    script = os.path.join(workdir, "first.py")
    with open(script, "w") as f:
        f.write(_FIRST)
    try:
        with Launcher() as launcher:  # the default pool, as the kernel uses it
            _spawns(launcher, script, 2, 0.05)  # the zygote imports and the pool fills
            ms, warm = _spawns(launcher, script, n, 0.04)
            rows["sandboxed python, warm slot (paced 40 ms)"] = {**summary(ms), "warm": warm}
            ms, warm = _spawns(launcher, script, n, 0.0)
            rows["sandboxed python, back-to-back"] = {**summary(ms), "warm": warm}
            devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            for label, wait in (("spawn+exit one at a time", True), ("spawns, agents overlapping", False)):
                t0, running = time.monotonic(), []
                while time.monotonic() - t0 < 2.0:
                    spec = SpawnSpec(
                        10_000 + len(running), "rate", [sys.executable, script], {}, None, stdout_fd=devnull
                    )
                    running.append(launcher.spawn(spec))
                    if wait:
                        running[-1].wait(30)
                elapsed = time.monotonic() - t0
                for agent in running:
                    agent.wait(30)
                rows[f"sustained: {label}"] = {"n": len(running), "per_s": len(running) / elapsed}
            os.close(devnull)
            kills = []
            for i in range(n):
                agent = launcher.spawn(
                    SpawnSpec(20_000 + i, "victim", ["sleep", "60"], {"PATH": "/usr/bin:/bin"}, None)
                )
                time.sleep(0.01)
                t0 = time.monotonic_ns()
                agent.kill(timeout=0)
                kills.append((time.monotonic_ns() - t0) / 1e6)
            rows["kill(timeout=0) to released"] = summary(kills)
        with Launcher(pool_size=0) as cold:
            _spawns(cold, script, 2, 0.0)
            rows["sandboxed python, zygote without slots"] = summary(_spawns(cold, script, n, 0.0)[0])
            rows["sandboxed python, exec (no zygote)"] = summary(
                _spawns(cold, script, n, 0.0, use_zygote=False)[0]
            )
        rows["baseline: cold python3 (posix_spawn)"] = summary(_popen([sys.executable, script], n))
        rows["baseline: python3 -S"] = summary(_popen([sys.executable, "-S", script], n))
        bwrap = shutil.which("bwrap")
        if bwrap:
            rows["baseline: bwrap --unshare-all /bin/true (wall)"] = summary(
                _wall([bwrap, "--unshare-all", "--ro-bind", "/", "/", "/bin/true"], n)
            )
        else:
            rows["baseline: bwrap --unshare-all /bin/true (wall)"] = {
                "n": 0,
                "note": "bwrap not installed (apt-get install bubblewrap)",
            }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 50
    rows = measure(n)
    print(f"{'figure':48s} {'n':>4s} {'p50 ms':>8s} {'p99 ms':>8s} {'min':>7s} {'max':>7s}")
    for name, row in rows.items():
        if "p50" in row:
            extra = f"  warm {row['warm']}/{row['n']}" if "warm" in row else ""
            print(
                f"{name:48s} {row['n']:4d} {row['p50']:8.2f} {row['p99']:8.2f} {row['min']:7.2f} {row['max']:7.2f}{extra}"
            )
        elif "per_s" in row:
            print(f"{name:48s} {row['n']:4d} {row['per_s']:8.1f} spawns/s")
        else:
            print(f"{name:48s} {row['note']}")
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs, no pinning")


if __name__ == "__main__":
    main(sys.argv[1:])
