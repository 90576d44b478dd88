"""The sandbox figures of `clove-gym bench isolation`, measured through a real kernel and its SDK.

Every probe talks to a kernel running in its own process (`bench_server.KernelProcess`) that records a
trace: "first syscall" is the trace record of the agent's first frame (its NOOP names the agent), stamped
by the kernel with CLOCK_MONOTONIC, which the client, the kernel and the agents' namespaces all share.
Baselines (bwrap, a cold interpreter, a plain SIGKILL + reap, the kill of a Python in bwrap) run in the
same process, interleaved with the measured operations, so both see the same machine load.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clove_gym.benchmarks.agents import script
from clove_gym.benchmarks.bench_baseline import ping_client
from clove_gym.runtime.client import Client
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.sandbox.pidfds import children
from clove_gym.runtime.trace.reader import iter_records

CGROUP_ROOT = "/sys/fs/cgroup"
READY_PREFIX = "isolation/ready/"
BWRAP_MISSING = "bwrap not installed (apt-get install bubblewrap)"
_POLL_S = 0.0002  # resource-release polling step: far below the figures it bounds


@dataclass
class Stats:
    """Summary of one sample list, in the sample unit."""

    n: int
    p50: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: list[float]) -> Stats:
        if not samples:
            raise ValueError("no samples to summarise")
        if len(samples) == 1:
            return cls(1, samples[0], samples[0], samples[0], samples[0])
        q = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(len(samples), statistics.median(samples), q[98], min(samples), max(samples))


@dataclass
class SpawnRun:
    """Per spawn: SPAWN sent, reply received, agent's first statement, its first frame at the kernel."""

    sent_ns: dict[str, int] = field(default_factory=dict)
    reply_ns: dict[str, int] = field(default_factory=dict)
    warm: dict[str, bool] = field(default_factory=dict)
    first_stmt_ns: dict[str, int] = field(default_factory=dict)
    first_frame_ns: dict[str, int] = field(default_factory=dict)
    frame_agent_id: dict[str, int] = field(default_factory=dict)
    spawn_id: dict[str, int] = field(default_factory=dict)
    isolation: dict[str, Any] = field(default_factory=dict)

    def ms(self, end: dict[str, int]) -> list[float]:
        return [(end[n] - self.sent_ns[n]) / 1e6 for n in self.sent_ns if n in end]

    def missing(self) -> list[str]:
        return [n for n in self.sent_ns if n not in self.first_frame_ns]

    def id_mismatches(self) -> list[str]:
        return [n for n, aid in self.frame_agent_id.items() if aid != self.spawn_id.get(n)]


def spawn_timed(client: Client, run: SpawnRun, name: str, agent_script: str) -> dict[str, Any]:
    """SPAWN one sandboxed agent, noting when the request left and the reply came back."""
    t0 = time.monotonic_ns()
    reply = client.spawn(name, agent_script, sandboxed=True, restart_policy="never")
    run.reply_ns[name] = time.monotonic_ns()
    if not reply.get("success", True) or "id" not in reply:
        raise RuntimeError(f"SPAWN {name}: {reply.get('error', reply)}")
    run.sent_ns[name] = t0
    run.spawn_id[name] = reply["id"]
    run.warm[name] = bool(reply["isolation"].get("warm_slot"))
    run.isolation = reply["isolation"]
    return reply


def collect_first_frames(trace_path: str, run: SpawnRun, timeout: float = 10.0) -> None:
    """Fill `first_*` from the kernel's trace (flushed every 100 ms) until every agent's NOOP is there."""
    deadline = time.monotonic() + timeout
    while True:
        for rec in iter_records(trace_path):
            if rec.kind != 0 or rec.opcode != Op.NOOP or not rec.req.startswith(b"first:"):
                continue
            name, _, started = rec.req[6:].decode("utf-8", "replace").partition(":")
            if name in run.sent_ns and name not in run.first_frame_ns:
                run.first_frame_ns[name] = rec.t_ns
                run.frame_agent_id[name] = rec.agent_id
                if started.isdigit():
                    run.first_stmt_ns[name] = int(started)
        if not run.missing() or time.monotonic() > deadline:
            return
        time.sleep(0.15)


# ---- baselines -------------------------------------------------------------------------------------


def bwrap_argv() -> list[str] | None:
    """`bwrap --unshare-all` running /bin/true in a read-only view of / (it needs a root to exec from);
    None when bwrap cannot run here (`bwrap_unusable()` says why)."""
    bwrap = shutil.which("bwrap")
    return [bwrap, *_BWRAP_SANDBOX, "/bin/true"] if bwrap and bwrap_unusable() is None else None


_BWRAP_SANDBOX = ("--unshare-all", "--ro-bind", "/", "/")


@functools.cache
def bwrap_unusable() -> str | None:
    """Why the bwrap baselines cannot be measured here, None when they can: bwrap is missing, or it
    cannot make its namespaces (it needs root or unprivileged user namespaces). Tried once per process,
    so a baseline that cannot run is reported as missing with the reason instead of failing the bench."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return BWRAP_MISSING
    try:
        done = subprocess.run(
            [bwrap, *_BWRAP_SANDBOX, "/bin/true"], stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run here: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        return f"bwrap cannot run here: {why}"
    return None


def wall_ms(argv: list[str]) -> float:
    """Wall time of running `argv` to completion, in ms."""
    t0 = time.monotonic_ns()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return (time.monotonic_ns() - t0) / 1e6


_IDLE_PY = "import sys, time; sys.stdout.write('up'); sys.stdout.flush(); time.sleep(60)"


def bwrap_python_argv(*extra: str) -> list[str] | None:
    """`bwrap --unshare-all` running an idle Python (this interpreter) that writes "up" once it runs:
    the sandbox whose kill the KILL figure is set beside. `extra` lands in that Python's sys.argv.
    --die-with-parent: should bwrap itself be killed (a sandbox that never came up), so is the Python."""
    argv = bwrap_argv()
    return (
        [argv[0], "--die-with-parent", *argv[1:-1], sys.executable, "-c", _IDLE_PY, *extra] if argv else None
    )


def bwrap_kill_ms(argv: list[str], timeout: float = 10.0) -> float:
    """Baseline for kill-to-released with the same chain of exits as a sandboxed Python agent's: bwrap's
    process (the parent, as our zygote is) -> its PID-namespace init -> the Python. Once the program
    wrote to stdout, SIGKILL that init (ending the namespace), then wait until bwrap has exited and is
    reaped; ms. RuntimeError, with nothing left running, if the program never writes."""
    up_r, up_w = os.pipe()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=up_w)
    finally:
        os.close(up_w)
    try:
        up = select.select([up_r], [], [], timeout)[0] and os.read(up_r, 64)
        init = _exec_child(proc.pid, "bwrap") if up else None
        if init is None:
            raise RuntimeError(f"{argv}: the sandboxed program never came up (exit status {proc.poll()})")
        pidfd = os.pidfd_open(init)  # init's parent, bwrap, only reaps it once we kill it
        try:
            t0 = time.monotonic_ns()
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            proc.wait()
            return (time.monotonic_ns() - t0) / 1e6
        finally:
            os.close(pidfd)
    finally:
        os.close(up_r)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _exec_child(pid: int, comm: str) -> int | None:
    """The child of `pid` whose command name is `comm` (so it has exec'd), if any."""
    for kid in children(pid):
        with contextlib.suppress(OSError), open(f"/proc/{kid}/comm") as f:
            if f.read().strip() == comm:
                return kid
    return None


def plain_kill_ms() -> float:
    """Baseline for kill-to-released: SIGKILL a plain `sleep` child and reap it."""
    proc = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    time.sleep(0.005)
    t0 = time.monotonic_ns()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return (time.monotonic_ns() - t0) / 1e6


# ---- resources of one agent ---------------------------------------------------------------------------


def pidfd_count(pid: int) -> int:
    """How many pidfds process `pid` holds (from /proc/<pid>/fd)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]"
    return count


def cgroup_dirs(rel: str) -> list[str]:
    """Every existing directory of cgroup `rel`: one per v1 controller, the v2 one, or a pure-v2 root."""
    if not rel:
        return []
    roots = [CGROUP_ROOT] + [os.path.join(CGROUP_ROOT, c) for c in os.listdir(CGROUP_ROOT)]
    return [d for d in (os.path.join(r, rel) for r in roots if os.path.isdir(r)) if os.path.isdir(d)]


def pid_alive(pid: int) -> bool:
    """True while /proc/<pid> exists (a zombie still counts: its resources are not all released)."""
    return os.path.exists(f"/proc/{pid}")


def state(pid: int) -> str:
    """The /proc state letter of `pid` (Z = zombie), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@dataclass
class Held:
    """What one live sandboxed agent holds, to be checked for release after KILL: pids[0] is its init."""

    pids: list[int]
    cgroup_rel: str
    kernel_pid: int
    pidfds_after: int  # the kernel's pidfd count once this agent is gone

    def held(self) -> list[str]:
        """What is still held: live (or zombie) pids, cgroup directories, the kernel's pidfd."""
        roles = ("init", *("agent" for _ in self.pids[1:]))
        out = [f"{r} pid {p} ({state(p)})" for r, p in zip(roles, self.pids, strict=True) if pid_alive(p)]
        out += cgroup_dirs(self.cgroup_rel)
        extra = pidfd_count(self.kernel_pid) - self.pidfds_after
        return out + [f"{extra} pidfd(s) in the kernel"] if extra > 0 else out


def wait_ready(client: Client, names: list[str], timeout: float) -> None:
    """Until every named idle agent stored its ready key; raises RuntimeError naming the ones missing."""
    deadline = time.monotonic() + timeout
    want = {READY_PREFIX + n for n in names}
    while True:
        keys = set(client.list_keys(READY_PREFIX).get("keys", []))
        if want <= keys:
            return
        if time.monotonic() > deadline:
            missing = sorted(k[len(READY_PREFIX) :] for k in want - keys)
            raise RuntimeError(f"{len(missing)} idle agents never became ready: {missing[:5]}")
        time.sleep(0.05)


@dataclass(frozen=True)
class KillTiming:
    """One KILL: ms to its reply, ms until everything was verified released, what was still held at the
    reply, and the host's CPU steal (all vCPUs) from just before the KILL to the release, in ms. Steal
    is counted in clock ticks (10 ms): 0 may hide up to a tick, and a stall of 20 ms or more never
    reads 0."""

    reply_ms: float
    released_ms: float
    held_at_reply: list[str]
    steal_ms: float


def kill_released(client: Client, kernel_pid: int, name: str) -> KillTiming:
    """Spawn an idle agent, wait until it is ready, KILL it, and time the KILL (see KillTiming): released
    means its processes, cgroup directories and the kernel's pidfd are all verified gone."""
    before = pidfd_count(kernel_pid)
    reply = client.spawn(name, script("isolation_idle.py"), sandboxed=True, restart_policy="never")
    if "id" not in reply:
        raise RuntimeError(f"SPAWN {name}: {reply.get('error', reply)}")
    wait_ready(client, [name], 30.0)
    held = Held(
        [reply["pid"], *children(reply["pid"])],
        reply["isolation"].get("cgroup_path", ""),
        kernel_pid,
        before,
    )
    steal_before = _steal_ticks()
    t0 = time.monotonic_ns()
    if not client.kill(agent_id=reply["id"]):
        raise RuntimeError(f"KILL {name} (id {reply['id']}) was refused")
    t_reply = time.monotonic_ns()
    at_reply = held.held()
    deadline = t_reply + 5_000_000_000
    while still := held.held():
        if time.monotonic_ns() > deadline:
            raise RuntimeError(f"agent {name}: still held 5 s after its KILL was answered: {still}")
        time.sleep(_POLL_S)
    t_released = time.monotonic_ns() if at_reply else t_reply
    steal_after = _steal_ticks()
    client.delete_key(READY_PREFIX + name)
    return KillTiming(
        (t_reply - t0) / 1e6,
        (t_released - t0) / 1e6,
        at_reply,
        float("nan")
        if steal_before is None or steal_after is None
        else (steal_after - steal_before) * 1000 / os.sysconf("SC_CLK_TCK"),
    )


def _steal_ticks() -> int | None:
    """All vCPUs' stolen time so far, in clock ticks (None where /proc/stat cannot be read)."""
    times = cpu_times()
    return times[7] if len(times) > 7 else None


def cpu_times() -> list[int]:
    """The machine's cumulative CPU times in clock ticks: the `cpu` line of /proc/stat (user nice system
    idle iowait irq softirq steal ...); empty where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


# ---- many idle agents ---------------------------------------------------------------------------------


def spawn_idle(client: Client, prefix: str, count: int) -> list[dict[str, Any]]:
    """SPAWN `count` idle sandboxed agents back to back."""
    replies = []
    for i in range(count):
        reply = client.spawn(f"{prefix}{i}", script("isolation_idle.py"), sandboxed=True)
        if "id" not in reply:
            raise RuntimeError(f"SPAWN {prefix}{i} ({i} already running): {reply.get('error', reply)}")
        replies.append(reply)
    return replies


def noop_runs(socket_path: str, reps: int, rounds: int) -> list[dict[str, Any]]:
    """`reps` closed-loop NOOP runs of the C client (unpinned), each `rounds` round trips."""
    return [ping_client(socket_path, None, rounds=rounds, size=64) for _ in range(reps)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved(n: int, steps: dict[str, Callable[[], object]]) -> None:
    """Run each step `n` times, rotating which goes first, so no one always runs on a quieter machine."""
    order = list(steps)
    for i in range(n):
        k = i % len(order)
        for name in order[k:] + order[:k]:
            steps[name]()


def python_argv() -> list[str]:
    """A cold interpreter: this very executable (never a slow pyenv shim), doing nothing."""
    return [sys.executable, "-c", "pass"]
