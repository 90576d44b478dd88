"""The crash-isolation scenario's baselines: the same workers as threads of one process, and as tasks
of a `multiprocessing.Pool`.

Workers publish into a shared array (one slot per worker: counter, last step time, largest gap between
two of its steps, its task or process id), the way the agents publish into the kernel's store, so the
observer sees progress from outside whatever happens to the workers. Each run is driven by
`crash_isolation` with the same phases as the agents: all started, calm window, crash the victims,
observation window.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

N, LAST, GAP, TID = range(4)  # slot fields
FIELDS = 4


@dataclass
class Shared:
    """The observer's view: a RawArray of FIELDS per worker, a stop flag, per-worker crash flags."""

    slots: Any
    stop: Any
    crash: Any
    count: int

    @classmethod
    def create(cls, ctx: Any, count: int) -> Shared:
        return cls(ctx.RawArray("q", count * FIELDS), ctx.RawValue("b", 0), ctx.RawArray("b", count), count)

    def get(self, i: int, f: int) -> int:
        return self.slots[i * FIELDS + f]

    def counters(self) -> list[int]:
        return [self.get(i, N) for i in range(self.count)]

    def reset_gaps(self) -> None:
        for i in range(self.count):
            self.slots[i * FIELDS + GAP] = 0


def work(shared: Shared, i: int, step_s: float, ident: int, crash_check: bool = False) -> int:
    """One worker's loop: count, publish, sleep; returns its count when asked to stop. With
    `crash_check`, raises RuntimeError when its crash flag is set (the thread-exception crash)."""
    base = i * FIELDS
    slots = shared.slots
    slots[base + TID] = ident
    n, last = 0, time.monotonic_ns()
    while not shared.stop.value:
        if crash_check and shared.crash[i]:
            raise RuntimeError(f"worker {i} crashed")
        n += 1
        now = time.monotonic_ns()
        slots[base + GAP] = max(slots[base + GAP], now - last)
        slots[base + N], slots[base + LAST] = n, now
        last = now
        time.sleep(step_s)
    return n


# ---- threads in one process ---------------------------------------------------------------------------


def _threads_main(shared: Shared, step_s: float, crash_check: bool) -> None:
    threading.excepthook = lambda _args: None  # the crash is expected; its traceback would only be noise
    threads = [
        threading.Thread(target=lambda i=i: work(shared, i, step_s, threading.get_native_id(), crash_check))
        for i in range(shared.count)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@dataclass
class InprocRun:
    """What the driver needs from one baseline run, and what it found out about its failure mode."""

    shared: Shared
    crash: Callable[[list[int]], list[int]]  # crash these workers; returns the crash time of each (ns)
    finish: Callable[[], dict[str, Any]]  # stop, collect, clean up; returns facts for the table
    notes: list[str] = field(default_factory=list)


def start_threads(count: int, step_s: float, how: str) -> InprocRun:
    """`count` threads in one child process. `how`: "sigkill" (SIGKILL to each victim's task id from
    outside, as the agents get) or "exception" (each victim raises an uncaught exception)."""
    if how not in ("sigkill", "exception"):
        raise ValueError(f"threads crash mode: expected 'sigkill' or 'exception', got {how!r}")
    ctx = mp.get_context("fork")
    shared = Shared.create(ctx, count)
    proc = ctx.Process(target=_threads_main, args=(shared, step_s, how == "exception"), daemon=True)
    proc.start()

    def crash(victims: list[int]) -> list[int]:
        times = []
        for i in victims:
            times.append(time.monotonic_ns())
            if how == "exception":
                shared.crash[i] = 1
            else:  # a thread cannot be killed alone: SIGKILL to its task id takes the whole process
                with contextlib.suppress(ProcessLookupError):
                    os.kill(shared.get(i, TID), signal.SIGKILL)
        return times

    def finish() -> dict[str, Any]:
        shared.stop.value = 1
        proc.join(10)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
        status = proc.exitcode
        return {"process_exit": "killed by SIGKILL" if status == -signal.SIGKILL else f"exit {status}"}

    return InprocRun(shared, crash, finish)


# ---- a multiprocessing.Pool ---------------------------------------------------------------------------

_pool_shared: Shared | None = None


def _pool_init(shared: Shared) -> None:
    global _pool_shared
    _pool_shared = shared


def _pool_task(i: int, step_s: float) -> int:
    assert _pool_shared is not None, "pool initializer did not run"
    return work(_pool_shared, i, step_s, os.getpid())


def start_pool(count: int, step_s: float, join_wait: float = 2.0) -> InprocRun:
    """`count` long tasks on a Pool of `count` worker processes; victims' workers get SIGKILL."""
    ctx = mp.get_context("fork")
    shared = Shared.create(ctx, count)
    pool = ctx.Pool(count, initializer=_pool_init, initargs=(shared,))
    results = [pool.apply_async(_pool_task, (i, step_s)) for i in range(count)]
    workers_before: set[int] = set()

    def crash(victims: list[int]) -> list[int]:
        workers_before.update(p.pid for p in mp.active_children())
        times = []
        for i in victims:
            times.append(time.monotonic_ns())
            with contextlib.suppress(ProcessLookupError):
                os.kill(shared.get(i, TID), signal.SIGKILL)
        return times

    def finish() -> dict[str, Any]:
        replaced = len({p.pid for p in mp.active_children()} - workers_before)
        shared.stop.value = 1
        deadline = time.monotonic() + 10.0
        lost = 0
        for r in results:
            try:
                r.get(max(0.05, deadline - time.monotonic()))
            except mp.TimeoutError:
                lost += 1
        pool.close()
        joiner = threading.Thread(target=pool.join, daemon=True)
        joiner.start()
        joiner.join(join_wait)
        hung = joiner.is_alive()
        pool.terminate()
        joiner.join(10)
        return {
            "tasks_lost": lost,
            "workers_replaced": replaced,
            "join_hung": hung,
            "join_wait_s": join_wait,
        }

    return InprocRun(shared, crash, finish)
