"""Per-task figures from the run's workload trace: what each task's agents asked of the kernel.

The trace holds every syscall with its agent id and service time, and every message enqueued with its
sender; a task's agents are the ids the runner saw it spawn. Percentiles are nearest-rank, as in the
trace summary, so every figure is a latency that occurred.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from clove_gym.benchmarks.suite.task import TaskResult
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.reader import TraceFile


def add_trace_metrics(trace: TraceFile, results: list[TaskResult]) -> None:
    """Add syscalls, messages, events and service p50/p99 (µs) to each result's metrics."""
    service: dict[int, list[int]] = defaultdict(list)
    sent: dict[int, int] = defaultdict(int)
    for rec in trace.records:
        if rec.kind == Kind.SYSCALL:
            service[rec.agent_id].append(rec.service_ns)
        elif rec.kind == Kind.MSG_ENQUEUE:
            sent[rec.agent_id] += 1
    for result in results:
        ns = [v for agent in result.agent_ids for v in service.get(agent, ())]
        figures: dict[str, float | None] = {
            "syscalls": len(ns),
            "messages": sum(sent.get(agent, 0) for agent in result.agent_ids),
            "service_p50_us": None,
            "service_p99_us": None,
        }
        if ns:
            arr = np.asarray(ns, dtype=np.int64)
            for q in (50, 99):
                figures[f"service_p{q}_us"] = round(
                    float(np.percentile(arr, q, method="inverted_cdf")) / 1e3, 1
                )
        result.metrics = {**figures, **result.metrics}
