"""THINK-queue decision backends by name (runtime/sched_backend.py): the software default is untouched,
unknown or failing backends stop the kernel from starting with the reason, and the `model` backend
(the golden model, found through the entry point like `rtl`) decides exactly as the software queue
within the documented mapping, refusing what it cannot map."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.llm import FakeGemini, LLMService
from clove_gym.runtime.llm.fake_gemini import RecordedRequest, echo
from clove_gym.runtime.sched_backend import ENV, BackendQueue, SchedulerBackendError, available, open_queue
from clove_gym.runtime.scheduler import Scheduler


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_software_is_the_default_and_unchanged(tmp_path: Path) -> None:
    assert type(open_queue()) is Scheduler and type(open_queue("software")) is Scheduler
    with LLMService() as llm:
        assert type(llm.scheduler) is Scheduler
    kernel = Kernel(str(tmp_path / "k.sock"))
    assert kernel.llm is None  # created on the first THINK, as before
    kernel.stop()
    assert {"software", "rtl", "fpga", "model"} <= set(available())
    with LLMService() as llm, pytest.raises(ValueError, match="give scheduler= to the LLMService"):
        Kernel(str(tmp_path / "k.sock"), llm=llm, scheduler="model")


def test_environment_selects_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "model:agents=4")
    with LLMService() as llm:
        assert isinstance(llm.scheduler, BackendQueue) and llm.scheduler.name == "model"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuch", "unknown scheduler backend 'nosuch': expected one of ['software', "),
        (":x=1", "no backend name"),
        ("software:depth=3", "'software' takes no options"),
        ("model:depth", "option 'depth' is not KEY=VALUE"),
        ("model:colour=red", "'model' cannot start: ParamsError: unknown option(s) ['colour']"),
        ("model:agents=3", "'model' cannot start: ParamsError: agents=3: must be a power of two"),
        (
            "model:bucket_rate=4",
            "'model' cannot start: ParamsError: bucket_rate=4: the runtime needs bucket_rate=0",
        ),
        ("model:params=/nonexistent.json", "cannot read parameter file"),
    ],
)
def test_bad_specs_fail_the_kernel_start(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(SchedulerBackendError) as err:
        Kernel(str(tmp_path / "k.sock"), scheduler=spec)
    assert message in str(err.value)
    assert not (tmp_path / "k.sock").exists()


def test_cli_refuses_an_unknown_backend(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "clove-gym")
    sock = str(tmp_path / "k.sock")
    for command in ("start", "run"):
        proc = subprocess.run(
            [cli, "kernel", command, "--socket", sock, "--scheduler", "nosuch"],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if k != ENV},
        )
        assert proc.returncode == 1 and "unknown scheduler backend 'nosuch'" in proc.stderr, proc
        assert not os.path.exists(sock)


def _model(options: str) -> BackendQueue:
    queue = open_queue(f"model:{options}")
    assert isinstance(queue, BackendQueue)
    return queue


def test_model_backend_decides_as_the_software_queue() -> None:
    weights = [1, 2, 1, 3, 1, 1, 2, 1]
    for seed in range(5):
        rng = random.Random(seed)
        hw = _model(
            "agents=8,depth=4,quantum=2,max_cost=2,bucket_burst=2,weights=" + "/".join(map(str, weights))
        )
        sw = Scheduler(quantum=2, depth=4)
        ids = rng.sample(range(100, 1000), 8)  # runtime agent ids are not slot numbers
        for agent, weight in zip(ids, weights, strict=True):
            hw.add_agent(agent, weight=weight)
            sw.add_agent(agent, weight=weight)
        refused = 0
        for n in range(4000):
            if rng.random() < 0.55:
                agent, cost = rng.choice(ids), rng.randint(1, 2)
                accepted = sw.enqueue(agent, n, cost=cost)
                assert hw.enqueue(agent, n, cost=cost) == accepted
                refused += not accepted
            else:
                assert hw.dispatch() == sw.dispatch(), (seed, n)
        assert refused > 50  # the depth-4 backpressure was exercised
        assert [hw.stats(a).dispatched for a in ids] == [sw.stats(a).dispatched for a in ids]


def test_what_cannot_be_mapped_is_refused_with_the_reason() -> None:
    queue = _model("agents=2,depth=2,weights=1/2")
    with pytest.raises(ValueError, match="token bucket .* use the software scheduler"):
        queue.add_agent(1, rate_per_s=5.0)
    with pytest.raises(ValueError, match="weight 3, but no slot has"):
        queue.add_agent(1, weight=3)
    queue.add_agent(1)
    queue.add_agent(2, weight=2)
    with pytest.raises(ValueError, match="cost 2 is outside 1..max_cost"):
        queue.enqueue(1, "x", cost=2)
    assert queue.enqueue(1, "a") and queue.enqueue(1, "b") and not queue.enqueue(1, "c")  # depth 2
    with pytest.raises(
        ValueError, match="no slot of weight 1 for agent 3: all 1 such .* hold queued requests"
    ):
        queue.add_agent(3)
    assert queue.stats(1).refused == 1 and queue.pending() == 2


def test_idle_slots_are_reused_and_removed_agents_drain() -> None:
    queue = _model("agents=2,depth=4")
    slots = queue.source.slot  # type: ignore[attr-defined]
    queue.add_agent(1)
    queue.add_agent(2)
    queue.enqueue(1, "1a")
    assert queue.dispatch() == (1, "1a")
    queue.add_agent(3)  # no free slot: the least recently used idle one (agent 2's, never used) is taken
    assert slots == {1: 0, 3: 1}
    queue.enqueue(3, "3a")
    queue.enqueue(3, "3b")
    queue.enqueue(2, "2a")  # agent 2 gets a slot back: agent 1's, idle
    assert slots == {3: 1, 2: 0}
    assert queue.remove_agent(3) == ["3a", "3b"]  # still queued in the model: slot 1 drains
    with pytest.raises(
        ValueError, match="no slot of weight 1 for agent 1: all 2 such .* hold queued requests"
    ):
        queue.enqueue(1, "1b")
    assert queue.dispatch() == (2, "2a")  # a grant of the removed agent was taken and discarded first
    queue.enqueue(1, "1b")
    assert queue.dispatch() == (1, "1b")  # after the last drained grant
    assert queue.dispatch() is None and len(queue) == 0
    queue.add_agent(4)
    assert slots == {1: 0, 4: 1}  # the drained slot is free again


def test_a_think_the_backend_cannot_take_is_answered_with_the_reason() -> None:
    gate = threading.Event()

    def script(request: RecordedRequest) -> object:
        if request.prompt == "gate":
            gate.wait(30)
        return echo(request)

    answers: dict[int, list[dict]] = {1: [], 2: [], 3: []}
    with FakeGemini(script) as fake:
        llm = LLMService(base_url=fake.base_url, workers=1, scheduler="model:agents=2,depth=1")
        try:
            with pytest.raises(ValueError, match="token bucket"):
                llm.set_agent(4, rate_per_s=1.0)
            assert llm.submit(1, {"prompt": "gate"}, answers[1].append)
            deadline = time.monotonic() + 20
            while not fake.requests and time.monotonic() < deadline:
                time.sleep(0.005)
            assert llm.submit(1, {"prompt": "1b"}, answers[1].append)
            assert llm.submit(2, {"prompt": "2a"}, answers[2].append)
            assert not llm.submit(2, {"prompt": "2b"}, answers[2].append)  # depth 1: backpressure
            assert llm.submit(3, {"prompt": "3a"}, answers[3].append)  # both slots hold a request
            assert "no slot of weight 1 for agent 3" in answers[3][0]["error"]
            gate.set()
            while sum(map(len, answers.values())) < 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert [a["content"] for a in answers[1] + answers[2]] == ["echo: gate", "echo: 1b", "echo: 2a"]
        finally:
            gate.set()
            llm.close()


def test_a_failed_service_start_closes_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend may own a process (the rtl harness): a service that fails to start must stop it."""
    from clove_gym.runtime.llm import service as service_mod
    from clove_gym.runtime.sched_backend import BackendQueue

    class Source:
        name = "recording"
        closed = False

        def add_agent(self, agent_id: int, weight: int) -> None: ...
        def remove_agent(self, agent_id: int) -> None: ...
        def enqueue(self, agent_id: int, cost: int) -> bool:
            return True

        def dispatch(self) -> int | None:
            return None

        def close(self) -> None:
            Source.closed = True

    def broken_client(**_kw: object) -> None:
        raise RuntimeError("no client")

    monkeypatch.setattr(service_mod.genai, "Client", broken_client)
    with pytest.raises(RuntimeError, match="no client"):
        service_mod.LLMService(base_url="http://127.0.0.1:9", scheduler=BackendQueue(Source()))
    assert Source.closed
