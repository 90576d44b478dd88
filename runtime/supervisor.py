"""Restart policy as a pure, deterministic object: the kernel reports exits, the supervisor answers with a
decision value (restart at t / escalate / forget) and the kernel acts on it.

Semantics (Erlang's restart intensity with systemd's knobs, fixing the reference's defects, spec §5.4):

* `never` forgets every exit; `on-failure` restarts only after a non-zero exit or a death by signal
  (status 128+signo); `always` restarts after any exit. An exit the kernel caused (KILL) is never
  restarted.
* The delay is `initial * multiplier**failures`, spread by a seeded jitter of +-`jitter` and capped at
  `backoff_max`; `failures` counts consecutive crashes and resets once an incarnation has run for
  `healthy_after` seconds.
* When `max_restarts` restarts already happened within the last `restart_window` seconds (a sliding
  window), the next exit escalates: one AGENT_ESCALATED, no more restarts.
* Time is always passed in, and jitter is a pure function of (seed, agent id, attempt), so the same
  inputs give the same decisions, and a snapshot restored in a new kernel continues identically.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class RestartPolicy(StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"

    @classmethod
    def parse(cls, value: object) -> RestartPolicy:
        """Accepts the SPAWN spellings (`on_failure` too); anything else raises ValueError."""
        if isinstance(value, RestartPolicy):
            return value
        if isinstance(value, str):
            text = value.strip().lower().replace("_", "-")
            for policy in cls:
                if policy.value == text:
                    return policy
        raise ValueError(f"restart_policy: expected 'never', 'on-failure' or 'always', got {value!r}")


@dataclass(frozen=True)
class RestartConfig:
    """Per-agent restart settings; SPAWN sets policy, max_restarts and restart_window."""

    policy: RestartPolicy = RestartPolicy.NEVER
    max_restarts: int = 5
    restart_window: float = 300.0
    backoff_initial: float = 1.0
    backoff_multiplier: float = 2.0
    backoff_max: float = 60.0
    jitter: float = 0.1
    healthy_after: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", RestartPolicy.parse(self.policy))
        checks: dict[str, tuple[float, float]] = {
            "max_restarts": (0, 1e9),
            "restart_window": (0, 1e9),
            "backoff_initial": (0, 1e6),
            "backoff_multiplier": (1, 1e3),
            "backoff_max": (0, 1e9),
            "jitter": (0, 1),
            "healthy_after": (0, 1e9),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name}: expected a number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name}: {value} is outside [{low}, {high}]")
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max: {self.backoff_max} is below backoff_initial {self.backoff_initial}"
            )

    @classmethod
    def from_spawn(cls, request: dict[str, Any]) -> RestartConfig:
        """From a SPAWN request: `restart_policy`, `max_restarts`, `restart_window` (seconds)."""
        return cls(
            policy=RestartPolicy.parse(request.get("restart_policy", "never")),
            max_restarts=request.get("max_restarts", 5),
            restart_window=request.get("restart_window", 300),
        )


@dataclass(frozen=True)
class Restart:
    """Start the agent again (same id) at time `at`; emit AGENT_RESTARTING with `attempt`."""

    agent_id: int
    at: float
    delay: float
    attempt: int
    exit_status: int


@dataclass(frozen=True)
class Escalate:
    """Too many restarts in the window: emit AGENT_ESCALATED, never restart this agent again."""

    agent_id: int
    restarts_in_window: int
    exit_status: int


@dataclass(frozen=True)
class Forget:
    """No restart by policy (or the kernel killed it): drop the agent's supervision record."""

    agent_id: int
    reason: str
    exit_status: int


Decision = Restart | Escalate | Forget


def is_failure(status: int) -> bool:
    """Non-zero exit or death by signal (reported as 128+signo) - what `on-failure` restarts."""
    return status != 0


@dataclass
class _Record:
    config: RestartConfig
    started_at: float
    failures: int = 0
    attempts: int = 0
    restarts: list[float] = field(default_factory=list)  # restart times inside the window
    pending: float | None = None  # time of a scheduled restart


class Supervisor:
    """Supervision records of all restartable agents, keyed by agent id (kept across restarts)."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._records: dict[int, _Record] = {}
        self._order: list[int] = []  # start order, for ordered shutdown
        self._queue: list[tuple[float, int]] = []

    def started(self, agent_id: int, config: RestartConfig, now: float) -> None:
        """An agent (re)started at `now`; the first call registers it with `config`."""
        record = self._records.get(agent_id)
        if record is None:
            self._records[agent_id] = _Record(config=config, started_at=now)
            self._order.append(agent_id)
        else:
            record.started_at = now
            record.pending = None

    def _jitter(self, agent_id: int, attempt: int) -> float:
        return random.Random(f"{self.seed}:{agent_id}:{attempt}").uniform(-1.0, 1.0)

    def exited(self, agent_id: int, status: int, now: float, killed: bool = False) -> Decision:
        """Decide what follows the exit of `agent_id` with `status` at `now`."""
        record = self._records.get(agent_id)
        if record is None:
            return Forget(agent_id, "not supervised", status)
        cfg = record.config
        if killed:
            return self._forget(agent_id, "killed by request", status)
        if cfg.policy is RestartPolicy.NEVER:
            return self._forget(agent_id, "restart policy never", status)
        if cfg.policy is RestartPolicy.ON_FAILURE and not is_failure(status):
            return self._forget(agent_id, "clean exit under on-failure", status)
        if now - record.started_at >= cfg.healthy_after:
            record.failures = 0
        record.restarts = [t for t in record.restarts if now - t < cfg.restart_window]
        if len(record.restarts) >= cfg.max_restarts:
            self._remove(agent_id)
            return Escalate(agent_id, len(record.restarts), status)
        base = min(cfg.backoff_max, cfg.backoff_initial * cfg.backoff_multiplier**record.failures)
        record.attempts += 1
        delay = min(
            cfg.backoff_max, max(0.0, base * (1 + cfg.jitter * self._jitter(agent_id, record.attempts)))
        )
        record.failures += 1
        record.restarts.append(now)
        record.pending = now + delay
        heapq.heappush(self._queue, (record.pending, agent_id))
        return Restart(agent_id, record.pending, delay, record.attempts, status)

    def _forget(self, agent_id: int, reason: str, status: int) -> Forget:
        self._remove(agent_id)
        return Forget(agent_id, reason, status)

    def _remove(self, agent_id: int) -> None:
        self._records.pop(agent_id, None)
        if agent_id in self._order:
            self._order.remove(agent_id)

    def cancel(self, agent_id: int) -> bool:
        """Forget an agent, including a restart still waiting in its backoff (KILL during backoff)."""
        known = agent_id in self._records
        self._remove(agent_id)
        return known

    def due(self, now: float) -> list[int]:
        """Agents whose scheduled restart time has come, in time order; each is returned once."""
        out: list[int] = []
        while self._queue and self._queue[0][0] <= now:
            at, agent_id = heapq.heappop(self._queue)
            record = self._records.get(agent_id)
            if record is not None and record.pending == at:
                record.pending = None
                out.append(agent_id)
        return out

    def next_deadline(self) -> float | None:
        """Earliest pending restart time (for the kernel's poll timeout), or None."""
        while self._queue:
            at, agent_id = self._queue[0]
            record = self._records.get(agent_id)
            if record is not None and record.pending == at:
                return at
            heapq.heappop(self._queue)
        return None

    def shutdown_order(self) -> list[int]:
        """Supervised agents in reverse start order: stop the last started first."""
        return list(reversed(self._order))

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state, so a restarted kernel continues with the same counters and schedule."""
        return {
            "seed": self.seed,
            "order": list(self._order),
            "records": {
                str(k): {**asdict(r), "config": {**asdict(r.config), "policy": r.config.policy.value}}
                for k, r in self._records.items()
            },
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any]) -> Supervisor:
        sup = cls(seed=snapshot["seed"])
        for key, raw in snapshot["records"].items():
            record = _Record(**{**raw, "config": RestartConfig(**raw["config"])})
            sup._records[int(key)] = record
            if record.pending is not None:
                heapq.heappush(sup._queue, (record.pending, int(key)))
        sup._order = [a for a in snapshot["order"] if a in sup._records]
        return sup
