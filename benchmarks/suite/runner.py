"""Runs a suite's tasks one at a time against one embedded kernel, so that no task can take the runner down.

A task run: its parameters go into the state store, its driver script is SPAWNed, and the runner polls
RECV and POLL_EVENTS until the driver's result message arrives, the driver exits without one (crashed),
or the task's timeout passes. Whatever happened, every agent the kernel still lists is then KILLed, so
LIST is empty between tasks; a process of the run that survived even that (or the kernel's own shutdown)
is SIGKILLed by pid at the end. The kernel records the workload trace and audit log of the whole run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psutil
from clove_gym.benchmarks import agents
from clove_gym.benchmarks.suite.options import RunOptions, resolve_llm
from clove_gym.benchmarks.suite.task import (
    CRASHED,
    ERROR,
    FAILED,
    INTERRUPTED,
    PASSED,
    TIMEOUT,
    Outcome,
    Suite,
    Task,
    TaskResult,
)
from clove_gym.runtime.client import Client, KernelError
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.llm import FakeGemini, LLMService

TRACE_FILE = "trace.clvtrace"
AUDIT_FILE = "audit.jsonl"
AGENT_LOG_DIR = "agents"
POLL_S = 0.02  # RECV/POLL_EVENTS do not block: the runner looks this often
EXIT_GRACE_S = 2.0  # after its result, how long a task's agents get to exit by themselves
CALL_TIMEOUT_S = 15.0  # one syscall of the runner's (a KILL waits out the kernel's 5 s SIGTERM grace)


class Progress(Protocol):
    def started(self, task: Task, repeat: int) -> None: ...
    def finished(self, result: TaskResult) -> None: ...


@dataclass
class SuiteRun:
    """Everything a report needs about one run of a suite."""

    suite: Suite
    tasks: tuple[Task, ...]
    options: RunOptions
    llm: str
    started: datetime
    finished: datetime | None = None
    results: list[TaskResult] = field(default_factory=list)
    interrupted: bool = False
    native: bool = False
    scheduler: str = "software"  # the THINK queue's decision backend ($CLOVE_SCHEDULER)
    runner_id: int = 0
    leftovers_killed: list[int] = field(default_factory=list)  # pids the final sweep had to SIGKILL

    @property
    def passed(self) -> bool:
        return not self.interrupted and bool(self.results) and all(r.passed for r in self.results)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM while the kernel shuts its agents down (only the main thread can)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@dataclass
class _Watch:
    """The agents of one task run as the runner sees them through events and messages."""

    driver: str
    names: dict[int, str] = field(default_factory=dict)  # id -> name, driver first
    exits: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    report_at: float = 0.0

    def all_exited(self) -> bool:
        return all(name in self.exits for name in self.names.values())


class Runner:
    def __init__(
        self,
        suite: Suite,
        tasks: Sequence[Task],
        options: RunOptions,
        workdir: Path,
        progress: Progress,
        started: datetime | None = None,
    ) -> None:
        self.run_info = SuiteRun(
            suite, tuple(tasks), options, resolve_llm(options.llm), started=started or datetime.now(UTC)
        )
        self.workdir = workdir
        self.log_dir = workdir / AGENT_LOG_DIR
        self.progress = progress
        self._processes: dict[int, psutil.Process] = {}  # every agent process seen, for the final sweep

    def run(self) -> SuiteRun:
        """Run every task `repeat` times. Ctrl-C (KeyboardInterrupt) ends the run early: the task under
        way is recorded as interrupted, and the agents are stopped all the same."""
        info = self.run_info
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fake = FakeGemini() if info.llm == "fake" else None
        service = LLMService(base_url=fake.base_url if fake else None, scheduler=info.options.scheduler)
        info.scheduler = getattr(service.scheduler, "name", "software")
        kernel = Kernel(
            trace_path=str(self.workdir / TRACE_FILE), audit_path=str(self.workdir / AUDIT_FILE), llm=service
        )
        client: Client | None = None
        started = False
        try:
            kernel.start()
            started = True
            info.native = kernel.native
            client = Client(kernel.socket_path, timeout=CALL_TIMEOUT_S)
            client.subscribe(["AGENT_SPAWNED", "AGENT_EXITED"])
            info.runner_id = client.agent_id
            for repeat in range(1, info.options.repeat + 1):
                for task in info.tasks:
                    self.progress.started(task, repeat)
                    self.progress.finished(self._run_task(client, task, repeat))
        except KeyboardInterrupt:
            info.interrupted = True
        finally:
            with shielded():
                if client is not None:
                    client.close()
                if started:
                    kernel.stop()
                service.close()
                if fake is not None:
                    fake.close()
                info.leftovers_killed = self._sweep()
                info.finished = datetime.now(UTC)
        return info

    # ---- one task run -----------------------------------------------------------------------------
    def _run_task(self, client: Client, task: Task, repeat: int) -> TaskResult:
        """Run, grade and clean up one task; the result is in run_info.results before the cleanup starts,
        so an interrupt during the cleanup loses nothing."""
        watch = _Watch(f"{task.name}.r{repeat}")
        t0 = time.monotonic()
        timeout = self.run_info.options.timeout_s or task.timeout_s
        try:
            failure = self._observe(client, task, watch, timeout)
        except KeyboardInterrupt:
            self.run_info.results.append(self._result(task, repeat, watch, INTERRUPTED, "interrupted", t0))
            raise
        except Exception as exc:  # a kernel call or the task's set-up failed: record it, go on
            failure = ERROR, f"{type(exc).__name__}: {exc}"
        if failure is None:
            status, score, reason = self._grade(task, watch)
        else:
            (status, reason), score = failure, 0.0
        result = self._result(task, repeat, watch, status, reason, t0)
        result.score = score
        result.metrics.update(_agent_metrics(task, watch.report))
        self.run_info.results.append(result)
        try:
            result.killed = self._kill_all(client, watch)
        except KernelError as exc:
            result.reason += f"; cleanup failed: {exc}"
        result.agents = {name: watch.exits.get(name) for name in watch.names.values()}
        return result

    def _observe(self, client: Client, task: Task, watch: _Watch, timeout: float) -> tuple[str, str] | None:
        """Start the driver and wait for its result: None once it reported, else (status, reason)."""
        if not client.connected:
            client.connect()
            client.subscribe(["AGENT_SPAWNED", "AGENT_EXITED"])
        params = {
            **task.params,
            "runner_id": client.agent_id,
            "log_dir": str(self.log_dir),
            "deadline_s": timeout,
            "llm": self.run_info.llm,
        }
        stored = client.store(f"params/{watch.driver}", params)
        if not stored.get("success"):
            return ERROR, f"could not store the parameters: {stored.get('error')}"
        # the driver starts the task's other agents: standard rights plus the right to spawn
        reply = client.spawn(
            watch.driver, agents.script(task.script), sandboxed=False, permissions={"can_spawn": True}
        )
        if not reply.get("success", False) or "id" not in reply:
            return ERROR, f"SPAWN of the driver failed: {reply.get('error', reply)}"
        self._add(watch, reply["id"], watch.driver, reply["pid"])
        deadline = time.monotonic() + timeout
        while True:
            self._poll(client, watch)
            now = time.monotonic()
            if watch.report is not None:
                if watch.all_exited() or now > watch.report_at + EXIT_GRACE_S:
                    break
            elif watch.driver in watch.exits:
                self._poll(client, watch)  # a result sent just before exiting is queued already
                if watch.report is None:
                    code = watch.exits[watch.driver]
                    return (
                        CRASHED,
                        f"driver exited with status {code} before reporting{self._log_hint(watch.driver)}",
                    )
                continue
            if now > deadline:
                return TIMEOUT, f"no result within {timeout:g} s"
            time.sleep(POLL_S)
        if "error" in watch.report:
            return ERROR, f"the driver reported an error: {watch.report['error']}"
        return None

    def _log_hint(self, name: str) -> str:
        log = self.log_dir / f"{name}.log"
        return f" (its output: {AGENT_LOG_DIR}/{log.name})" if log.is_file() and log.stat().st_size else ""

    def _grade(self, task: Task, watch: _Watch) -> tuple[str, float, str]:
        outcome = Outcome(
            report=watch.report or {},
            exits=dict(watch.exits),
            agent_names=tuple(watch.names.values()),
            llm=self.run_info.llm,
        )
        try:
            grade = task.grade(outcome)
        except Exception as exc:  # a grader bug fails its task, never the suite
            return ERROR, 0.0, f"grader raised {type(exc).__name__}: {exc}"
        return (PASSED if grade.passed else FAILED), grade.score, grade.reason

    def _result(
        self, task: Task, repeat: int, watch: _Watch, status: str, reason: str, t0: float
    ) -> TaskResult:
        end = watch.report_at if watch.report is not None else time.monotonic()
        return TaskResult(
            task=task.name,
            repeat=repeat,
            status=status,
            score=0.0,
            reason=reason,
            duration_s=round(end - t0, 4),
            report=watch.report,
            agent_ids=sorted(watch.names),
        )

    # ---- kernel traffic ---------------------------------------------------------------------------
    def _poll(self, client: Client, watch: _Watch) -> None:
        """Drain the runner's mailbox, then its events (an event emitted before a message was sent is
        therefore always seen with it)."""
        while True:
            got = client.recv_messages(max_messages=64)
            for entry in got.get("messages", []):
                body = entry.get("message")
                from_task = entry.get("from") in watch.names
                if (
                    from_task
                    and watch.report is None
                    and isinstance(body, dict)
                    and body.get("type") == "result"
                ):
                    result = body.get("result")
                    watch.report = result if isinstance(result, dict) else {"error": f"bad result {result!r}"}
                    watch.report_at = time.monotonic()
            if got.get("count", 0) < 64:
                break
        while True:
            got = client.poll_events(max_events=256)
            for event in got.get("events", []):
                data = event.get("data") or {}
                agent_id = data.get("agent_id")
                if event.get("type") == "AGENT_SPAWNED" and data.get("parent_id") in watch.names:
                    self._add(watch, agent_id, data.get("name", f"agent_{agent_id}"), data.get("pid"))
                elif event.get("type") == "AGENT_EXITED" and agent_id in watch.names:
                    watch.exits.setdefault(watch.names[agent_id], data.get("exit_code"))
            if got.get("count", 0) < 256:
                break

    def _add(self, watch: _Watch, agent_id: int, name: str, pid: int | None) -> None:
        watch.names.setdefault(agent_id, name)
        if pid:
            with contextlib.suppress(psutil.Error):
                self._processes[pid] = psutil.Process(pid)  # remembers its start time: no pid reuse

    def _kill_all(self, client: Client, watch: _Watch) -> list[str]:
        """KILL every agent the kernel lists (tasks run one at a time, so they are all this task's);
        SIGKILL the group of any the kernel could not kill. Returns the names killed."""
        killed = []
        for agent in client.list_agents():
            client.kill(agent_id=agent["id"], call_timeout=CALL_TIMEOUT_S)
            killed.append(agent["name"])
        for agent in client.list_agents():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(agent["pid"], signal.SIGKILL)
        if killed:
            self._poll(client, watch)
        return killed

    def _sweep(self) -> list[int]:
        """After the kernel stopped: SIGKILL any agent process of this run still alive (should be none)."""
        survivors = []
        for pid, proc in self._processes.items():
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
                    survivors.append(pid)
        return survivors


def _agent_metrics(task: Task, report: dict[str, Any] | None) -> dict[str, float]:
    if not report or "error" in report:
        return {}
    try:
        return {k: round(float(v), 3) for k, v in task.metrics(report).items()}
    except (TypeError, ValueError, KeyError, AttributeError):
        return {}
