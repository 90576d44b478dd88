"""The co-design loop: the kernel's THINK queue decided by the Verilated scheduler (`rtl`) against the
local fake Gemini, in the same order as the software queue; start failures; a harness dying mid-run;
and the decision rates of both through the kernel (printed, run with -s)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clove_gym.runtime.client import Client
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.llm import FakeGemini, LLMService
from clove_gym.runtime.llm.fake_gemini import RecordedRequest, echo
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.sched_backend import BackendQueue, open_queue

pytestmark = pytest.mark.hw

# quantum 1 and depth >= every agent's backlog: the software queue's settings (Scheduler()).
RTL = "rtl:agents=8,depth=8,weights=1/2/1/3/1/1/1/1"
WEIGHTS = (1, 2, 1, 3)  # the gate agent, then agents 1..3 (slots 0..3)
BACKLOG = (5, 7, 6)  # THINKs queued by agents 1..3 behind the gate
# DRR by hand: a round serves up to weight requests per agent (2, 1, 3) until queues empty.
EXPECTED = [1, 1, 2, 3, 3, 3] * 2 + [1, 2] + [2] * 4


class Gate:
    """A fake-Gemini script holding the `gate` prompt until released (echo for every other prompt)."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, request: RecordedRequest) -> object:
        if request.prompt == "gate":
            self.open.wait(60)
        return echo(request)


def _until(cond: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _dispatch_order(tmp_path: Path, scheduler: str) -> list[int]:
    """Agents (1..3) in the order their THINKs reached the fake Gemini, one worker: the queue's order.

    The gate agent's THINK holds the only worker until every other THINK is queued, so the order
    depends on the scheduler alone, not on thread timing."""
    gate = Gate()
    fake = FakeGemini(gate)
    llm = LLMService(base_url=fake.base_url, workers=1, timeout_s=60, scheduler=scheduler)
    kernel = Kernel(str(tmp_path / f"{scheduler.partition(':')[0]}.sock"), llm=llm).start()
    clients = [Client(kernel.socket_path, timeout=60) for _ in WEIGHTS]
    try:
        for client, weight in zip(clients, WEIGHTS, strict=True):
            client.echo("hi")  # learns its agent id
            llm.set_agent(client.agent_id, weight=weight)
        clients[0].call(Op.THINK, {"prompt": "gate"})
        _until(lambda: len(fake.requests) == 1, "the gate THINK to reach the fake")
        for i in range(max(BACKLOG)):
            for k, count in enumerate(BACKLOG, start=1):
                if i < count:
                    assert clients[k].call(Op.THINK, {"prompt": f"{k}-{i}"}).json()["status"] == "accepted"
        _until(lambda: llm.pending() == sum(BACKLOG), "every THINK to be queued")
        gate.open.set()
        results: list[dict] = []
        for client, count in zip(clients, (1, *BACKLOG), strict=True):
            got: list[dict] = []
            _until(
                lambda c=client, g=got, n=count: g.extend(c.poll_async(20)["results"]) or len(g) == n,
                "results",
            )
            results += got
        assert all('"success": true' in r["payload"] for r in results), results
        return [int(r.prompt.split("-")[0]) for r in fake.requests[1:]]
    finally:
        gate.open.set()
        for client in clients:
            client.close()
        kernel.stop()
        llm.close()
        fake.close()


def test_rtl_backend_dispatches_think_in_the_software_order(tmp_path: Path) -> None:
    software = _dispatch_order(tmp_path, "software")
    rtl = _dispatch_order(tmp_path, RTL)
    assert software == EXPECTED
    assert rtl == software


def test_kernel_started_with_rtl_serves_think_from_agents_joining_lazily(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeGemini() as fake:
        monkeypatch.setenv("CLOVE_GEMINI_BASE_URL", fake.base_url)
        with Kernel(str(tmp_path / "k.sock"), scheduler="rtl") as kernel:
            queue = kernel.llm.scheduler
            assert isinstance(queue, BackendQueue) and queue.name == "rtl"
            clients = [Client(kernel.socket_path, timeout=30) for _ in range(3)]
            for round_ in range(3):
                for n, client in enumerate(clients):
                    answer = client.think(f"agent {n} round {round_}")
                    assert answer["success"] and answer["content"] == f"echo: agent {n} round {round_}"
            assert [queue.stats(c.agent_id).dispatched for c in clients] == [3, 3, 3]
            for client in clients:
                client.close()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`clove-gym ...` as a user runs it (a detached kernel is then not this process's child)."""
    cmd = [str(Path(sys.executable).parent / "clove-gym"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_kernel_start_with_rtl_option_then_think_and_stop(tmp_path: Path) -> None:
    sock = str(tmp_path / "d.sock")
    with FakeGemini() as fake:
        env = dict(os.environ, CLOVE_GEMINI_BASE_URL=fake.base_url)
        started = _cli("kernel", "start", "--socket", sock, "--scheduler", RTL, env=env)
        assert started.returncode == 0, started.stderr
        try:
            with Client(sock, timeout=30) as client:
                assert client.think("through the rtl")["content"] == "echo: through the rtl"
            assert "THINK scheduler rtl" in Path(sock + ".log").read_text()
        finally:
            stopped = _cli("kernel", "stop", "--socket", sock)
            assert stopped.returncode == 0, stopped.stderr


def _start_fails(tmp_path: Path, scheduler: str, env: dict[str, str]) -> str:
    sock = str(tmp_path / "f.sock")
    cmd = [
        str(Path(sys.executable).parent / "clove-gym"),
        "kernel",
        "start",
        "--socket",
        sock,
        "--scheduler",
        scheduler,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc
    assert not os.path.exists(sock)
    return proc.stderr


def test_kernel_start_fails_when_verilator_cannot_run(tmp_path: Path) -> None:
    # A fresh build folder (nothing cached) and a PATH without perl: Verilator's driver cannot run.
    env = dict(os.environ, CLOVE_HW_BUILD=str(tmp_path / "build"), PATH=str(Path(sys.executable).parent))
    err = _start_fails(tmp_path, "rtl", env)
    assert "scheduler backend 'rtl' cannot start: ToolchainError: perl not found" in err


def test_kernel_start_fails_without_a_board(tmp_path: Path) -> None:
    err = _start_fails(tmp_path, f"fpga:port={tmp_path / 'ttyUSB9'}", dict(os.environ))
    assert "scheduler backend 'fpga' cannot start: LinkError" in err and "is the board attached?" in err


def test_harness_dying_mid_run_fails_every_think_with_the_reason() -> None:
    gate = Gate()
    with FakeGemini(gate) as fake:
        llm = LLMService(base_url=fake.base_url, workers=1, timeout_s=30, scheduler="rtl")
        answers: list[dict] = []
        done = threading.Event()

        def collect(result: dict) -> None:
            answers.append(result)
            if len(answers) == 4:
                done.set()

        try:
            assert llm.submit(1, {"prompt": "gate"}, collect)
            _until(lambda: len(fake.requests) == 1, "the gate THINK")
            for n in range(3):
                assert llm.submit(2 + n, {"prompt": f"queued {n}"}, collect)
            llm.scheduler.source.backend.stream.proc.kill()  # the Verilated model goes away
            gate.open.set()
            assert done.wait(30)
            failed = [a for a in answers if not a["success"]]
            assert len(failed) == 3 and all("THINK scheduler backend failed" in a["error"] for a in failed)
            assert "'rtl' failed" in failed[0]["error"]
            late: list[dict] = []
            llm.submit(5, {"prompt": "after"}, late.append)
            assert late and "THINK scheduler backend failed" in late[0]["error"]
            assert len(fake.requests) == 1  # nothing ran in software behind the user's back
        finally:
            gate.open.set()
            llm.close()


def _queue_rate(spec: str, rounds: int) -> float:
    """Enqueue + dispatch pairs per second through the LLMService's queue object, 8 agents."""
    queue = open_queue(spec)
    try:
        for a in range(8):
            queue.add_agent(a)
        t0 = time.perf_counter()
        for _ in range(rounds):
            for a in range(8):
                queue.enqueue(a, None)
            for _ in range(8):
                assert queue.dispatch() is not None
        return 8 * rounds / (time.perf_counter() - t0)
    finally:
        getattr(queue, "close", lambda: None)()


def _kernel_rate(tmp_path: Path, spec: str, per_agent: int = 25) -> float:
    """THINKs per second through the kernel: 4 agents, async THINKs, fake Gemini, 2 workers."""
    with FakeGemini() as fake:
        llm = LLMService(base_url=fake.base_url, timeout_s=30, scheduler=spec)
        with Kernel(str(tmp_path / "r.sock"), llm=llm) as kernel:
            clients = [Client(kernel.socket_path, timeout=30) for _ in range(4)]
            t0 = time.perf_counter()
            for i in range(per_agent):
                for c in clients:
                    c.call(Op.THINK, {"prompt": f"{i}"})
            for c in clients:
                got: list[dict] = []
                _until(
                    lambda c=c, g=got: g.extend(c.poll_async(50)["results"]) or len(g) == per_agent, "results"
                )
            seconds = time.perf_counter() - t0
            for c in clients:
                c.close()
        llm.close()
        assert len(fake.requests) == 4 * per_agent
    return 4 * per_agent / seconds


def test_decision_rates_software_vs_rtl(tmp_path: Path) -> None:
    specs = {"software": "software", "rtl": "rtl:depth=64"}  # depth as the software queue's
    queue: dict[str, list[float]] = {k: [] for k in specs}
    kernel: dict[str, list[float]] = {k: [] for k in specs}
    for _ in range(5):  # interleaved, so both see the same machine noise
        for name, spec in specs.items():
            queue[name].append(_queue_rate(spec, rounds=500))
            kernel[name].append(_kernel_rate(tmp_path, spec))
    for label, runs in (("queue enqueue+dispatch/s", queue), ("kernel THINK/s (fake Gemini)", kernel)):
        for name, xs in runs.items():
            print(
                f"\n{label} {name}: median {statistics.median(xs):,.0f}"
                f" (min {min(xs):,.0f}, max {max(xs):,.0f}, n={len(xs)})",
                end="",
            )
    print()
    assert all(x > 0 for xs in (*queue.values(), *kernel.values()) for x in xs)
