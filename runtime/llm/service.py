"""LLMService: THINK requests through google-genai, ordered fairly per agent by the Scheduler.

`submit` never blocks: it queues the request (or refuses it when the agent's queue is full) and a
small pool of worker threads takes requests in the Scheduler's order, calls
`client.models.generate_content`, and hands the THINK response dict to the caller's `done`.

The order comes from the software Scheduler unless another decision source is chosen
(runtime/sched_backend.py: `rtl`, `fpga`, ... by name or $CLOVE_SCHEDULER). If that backend fails
while deciding, every queued and later request is answered with the failure, never re-ordered by
software behind the user's back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clove_gym.runtime.llm import gemini
from clove_gym.runtime.llm.fake_gemini import FakeGemini
from clove_gym.runtime.llm.quota import Quota
from clove_gym.runtime.sched_backend import BackendQueue, SchedulerBackendError, open_queue
from clove_gym.runtime.scheduler import Scheduler
from google import genai
from google.genai import types

log = logging.getLogger(__name__)

Done = Callable[[dict[str, Any]], None]
_PLACEHOLDER_KEY = "no-key"  # the SDK insists on a key; a base_url endpoint (the fake) ignores it


@dataclass(slots=True)
class _Job:
    model: str
    contents: list[types.Part]
    config: types.GenerateContentConfig
    done: Done


class LLMService:
    """Fair, quota-checked THINK over google-genai.

    `done` is called exactly once per accepted `submit`, from a worker thread, or from the caller's
    thread when the answer is immediate (not configured, quota denied, bad request, closed).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gemini-2.0-flash",
        workers: int = 2,
        timeout_s: float = 60.0,
        scheduler: Scheduler | BackendQueue | str | None = None,
    ) -> None:
        """`scheduler`: a queue, or a backend spec (`rtl`, `rtl:params=FILE`, ...); None = $CLOVE_SCHEDULER,
        else the software Scheduler. A backend that cannot start raises SchedulerBackendError."""
        if workers < 1:
            raise ValueError(f"LLMService: workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"LLMService: timeout_s must be > 0, got {timeout_s}")
        self.api_key = api_key or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY") or None
        self.base_url = base_url
        self.model = model
        self.timeout_s = timeout_s
        # (an empty queue is falsy, hence the explicit test)
        self.scheduler = (
            open_queue(scheduler) if scheduler is None or isinstance(scheduler, str) else scheduler
        )
        self._broken: str | None = None  # set when the decision backend failed
        self.quotas: dict[int, Quota] = {}
        self._fake: FakeGemini | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []
        if self.api_key or self.base_url:
            try:
                http = types.HttpOptions(base_url=base_url, timeout=max(1, round(timeout_s * 1000)))
                # One client for all workers: its httpx pool is thread-safe and costs ~90 ms to build.
                client = genai.Client(
                    api_key=self.api_key or _PLACEHOLDER_KEY, vertexai=False, http_options=http
                )
            except BaseException:
                if isinstance(self.scheduler, BackendQueue):
                    self.scheduler.close()  # a backend's harness process must not outlive a failed start
                raise
            for n in range(workers):
                thread = threading.Thread(
                    target=self._work, args=(client,), name=f"llm-worker-{n}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    @classmethod
    def offline_or_live(cls, **kwargs: Any) -> LLMService:
        """Gemini when a key is set, else a private FakeGemini (echo answers) that `close()` stops."""
        if kwargs.get("api_key") or os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
            return cls(**kwargs)
        fake = FakeGemini()
        service = cls(**{**kwargs, "base_url": fake.base_url})
        service._fake = fake
        return service

    @property
    def configured(self) -> bool:
        """Whether an API key is set (from the argument, GEMINI_API_KEY or GOOGLE_API_KEY)."""
        return bool(self.api_key)

    def set_agent(
        self,
        agent_id: int,
        weight: int = 1,
        rate_per_s: float = 0.0,
        burst: int = 0,
        quota: Quota | None = None,
    ) -> None:
        """Register an agent's share, call rate and quota before its first submit (defaults otherwise)."""
        with self._cond:
            if agent_id in self.scheduler:
                raise ValueError(f"LLMService.set_agent: agent {agent_id} is already set")
            self.scheduler.add_agent(agent_id, weight=weight, rate_per_s=rate_per_s, burst=burst)
            if quota is not None:
                self.quotas[agent_id] = quota

    def remove_agent(self, agent_id: int) -> None:
        """Forget an agent (it exited); its queued requests are answered with an error."""
        with self._cond:
            jobs = self.scheduler.remove_agent(agent_id) if agent_id in self.scheduler else []
            self.quotas.pop(agent_id, None)
        for job in jobs:
            _answer(job.done, gemini.failure(f"agent {agent_id} removed before its THINK ran"))

    def submit(self, agent_id: int, request: dict[str, Any], done: Done) -> bool:
        """Queue a THINK request; False only when the agent's queue is full (retry later)."""
        immediate = None
        if not (self.api_key or self.base_url):
            immediate = gemini.NOT_CONFIGURED
        else:
            try:
                job = _Job(*gemini.build_call(request, self.model), done)
            except gemini.BadRequest as exc:
                immediate = str(exc)
        dropped: list[_Job] = []
        if immediate is None:
            with self._cond:
                if self._closed:
                    immediate = "LLM service closed"
                elif self._broken is not None:
                    immediate = self._broken
                else:
                    try:
                        queued = self._queue(agent_id, job)
                    except ValueError as exc:  # a backend's refusal (no slot for the agent, cost, ...)
                        immediate = str(exc)
                    except SchedulerBackendError as exc:
                        immediate, dropped = self._break(exc)
                    else:
                        if queued is not None:
                            return queued
                        immediate = gemini.QUOTA_DENIED
        _fail(dropped, immediate)
        _answer(done, gemini.failure(immediate))
        return True

    def _queue(self, agent_id: int, job: _Job) -> bool | None:
        """Under the lock: True queued, False the agent's queue is full, None the quota denies."""
        if agent_id not in self.scheduler:
            self.scheduler.add_agent(agent_id)
        quota = self.quotas.get(agent_id)
        if quota is not None and not quota.allows():
            return None
        if not self.scheduler.enqueue(agent_id, job, now_ns=time.monotonic_ns()):
            return False
        self._cond.notify()
        return True

    def _break(self, exc: SchedulerBackendError) -> tuple[str, list[_Job]]:
        """Under the lock: the decision backend failed; every queued job is taken out to be failed."""
        log.error("THINK scheduler backend failed: %s", exc)
        self._broken = f"THINK scheduler backend failed: {exc}"
        assert isinstance(self.scheduler, BackendQueue)  # the software Scheduler raises no such error
        return self._broken, self.scheduler.drain()

    def pending(self, agent_id: int | None = None) -> int:
        with self._cond:
            return self.scheduler.pending(agent_id)

    def close(self) -> None:
        """Stop the workers; queued requests are answered with an error, running calls finish."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            jobs = [job for agent in self.scheduler.agents for job in self.scheduler.remove_agent(agent)]
            self._cond.notify_all()
        _fail(jobs, "LLM service closed before the request ran")
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        if isinstance(self.scheduler, BackendQueue):
            try:
                self.scheduler.close()
            except Exception as exc:  # closing must finish; the backend is gone either way
                log.warning("closing the THINK scheduler backend %r: %s", self.scheduler.name, exc)
        if self._fake is not None:
            self._fake.close()

    def __enter__(self) -> LLMService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self, client: genai.Client) -> None:
        while True:
            failed: tuple[str, list[_Job]] | None = None
            with self._cond:
                try:
                    picked = self._wait_pick()
                except SchedulerBackendError as exc:
                    failed, picked = self._break(exc), None
                if picked is not None:
                    agent_id, job = picked
                    quota = self.quotas.get(agent_id)
                    if quota is not None and not quota.allows():
                        result: dict[str, Any] | None = gemini.failure(gemini.QUOTA_DENIED)
                    else:
                        result = None
                        if quota is not None:
                            quota.record(
                                tokens=0, calls=1
                            )  # counted now: concurrent calls cannot pass max_calls
            if failed is not None:
                _fail(failed[1], failed[0])
                continue
            if picked is None:
                return
            if result is None:
                result = self._call(client, job)
                if quota is not None and result["success"]:
                    with self._cond:
                        quota.record(result["tokens"], calls=0)
            _answer(job.done, result)

    def _wait_pick(self) -> tuple[int, _Job] | None:
        """Under the lock: the next (agent, job) in the scheduler's order; None once closed."""
        while True:
            if self._closed:
                return None
            now = time.monotonic_ns()
            picked = self.scheduler.dispatch(now)
            if picked is not None:
                return picked
            # Nothing eligible: sleep until a submit, or until rate-limited work gets its token.
            at = self.scheduler.next_eligible_ns(now)
            self._cond.wait(None if at is None else (at - now) / 1e9 + 0.0005)

    def _call(self, client: genai.Client, job: _Job) -> dict[str, Any]:
        try:
            response = client.models.generate_content(
                model=job.model, contents=job.contents, config=job.config
            )
            return gemini.success(response)
        except Exception as exc:  # every fault becomes an answer; a worker must never die
            return gemini.failure(gemini.reason(exc, self.timeout_s))


def _fail(jobs: list[_Job], reason: str) -> None:
    for job in jobs:
        _answer(job.done, gemini.failure(reason))


def _answer(done: Done, result: dict[str, Any]) -> None:
    try:
        done(result)
    except Exception:
        log.exception("THINK done callback raised; the answer was %r", result)
