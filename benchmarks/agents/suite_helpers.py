"""Plumbing shared by the suite's agents, written against the plain Clove SDK as any user would.

An agent finds its parameters in the state store under `params/<its name>` (stored by whoever spawned it),
registers its name so its parent can message it, and sends its result as a message. Its stdout/stderr go
to `<log_dir>/<name>.log`, so a crash's traceback stays with the report instead of scrolling past the
runner's progress bar.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from clove_sdk import CloveClient

HERE = os.path.dirname(os.path.abspath(__file__))
IDLE_POLL_S = 0.005
SPIN_S = 0.05  # a spinning receive busy-polls this long, then sleeps between polls
EXIT_NO_KERNEL = 10
EXIT_NO_PARAMS = 11

Match = Callable[[dict[str, Any]], bool]


class AgentError(RuntimeError):
    """Something this agent needed did not happen; str() says what."""


class Agent:
    """A connected agent with its parameters, a message buffer and a deadline."""

    def __init__(self) -> None:
        self.name = os.environ.get("CLOVE_AGENT_NAME", "")
        self.client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else None)
        if not self.client.connect():
            sys.exit(EXIT_NO_KERNEL)
        got = self.client.fetch(f"params/{self.name}")
        if not got.get("exists") or not isinstance(got.get("value"), dict):
            print(f"{self.name}: no parameters under params/{self.name}: {got}", file=sys.stderr)
            sys.exit(EXIT_NO_PARAMS)
        self.params: dict[str, Any] = got["value"]
        self._log_to_file()
        self.deadline = time.monotonic() + float(self.params.get("deadline_s", 60))
        self.pending: list[dict[str, Any]] = []  # received, not yet consumed
        self.client.register_name(self.name)

    def _log_to_file(self) -> None:
        log_dir = self.params.get("log_dir")
        if not log_dir:
            return
        fd = os.open(os.path.join(log_dir, f"{self.name}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)

    # ---- children --------------------------------------------------------------------------------
    def spawn(self, suffix: str, script: str, **params: Any) -> dict[str, Any]:
        """Store the child's parameters, then SPAWN it as `<my name>.<suffix>`."""
        child = f"{self.name}.{suffix}"
        inherited = {k: self.params[k] for k in ("log_dir", "deadline_s") if k in self.params}
        self.client.store(f"params/{child}", {**inherited, "parent": self.name, **params})
        reply = self.client.spawn(name=child, script=os.path.join(HERE, script), sandboxed=False)
        if not reply or not reply.get("success", reply.get("status") == "running"):
            raise AgentError(f"SPAWN of {child} failed: {reply}")
        return reply

    # ---- messages --------------------------------------------------------------------------------
    def tell_parent(self, body: dict[str, Any]) -> None:
        reply = self.client.send_message(body, to_name=self.params["parent"])
        if not reply.get("success"):
            raise AgentError(f"SEND to {self.params['parent']} failed: {reply}")

    def report(self, result: dict[str, Any]) -> None:
        """Send this task's result to the runner (its id is in the parameters)."""
        reply = self.client.send_message({"type": "result", "result": result}, to=self.params["runner_id"])
        if not reply.get("success"):
            raise AgentError(f"SEND of the result failed: {reply}")

    def receive(self, match: Match, timeout_s: float | None = None, spin: bool = False) -> dict[str, Any]:
        """The first message (the RECV entry: from, from_name, message) whose body satisfies `match`;
        others stay pending. RECV does not block, so this polls: with `spin` (latency measurements) back
        to back for the first SPIN_S, then like without it, sleeping IDLE_POLL_S between empty polls."""
        start = time.monotonic()
        end = self.deadline if timeout_s is None else min(self.deadline, start + timeout_s)
        while True:
            for i, entry in enumerate(self.pending):
                if match(entry["message"]):
                    return self.pending.pop(i)
            got = self.client.recv_messages(max_messages=64)
            if not got.get("success"):
                raise AgentError(f"RECV failed: {got.get('error')}")
            if got["messages"]:
                self.pending.extend(got["messages"])
                continue
            if time.monotonic() > end:
                raise AgentError("timed out waiting for a message")
            if not spin or time.monotonic() - start > SPIN_S:
                time.sleep(IDLE_POLL_S)

    def receive_n(self, n: int, match: Match, timeout_s: float | None = None) -> list[dict[str, Any]]:
        return [self.receive(match, timeout_s) for _ in range(n)]

    def events(self, until: Callable[[list[dict[str, Any]]], bool], timeout_s: float) -> list[dict[str, Any]]:
        """Poll events until `until(all events so far)` holds; raises on timeout."""
        seen: list[dict[str, Any]] = []
        end = min(self.deadline, time.monotonic() + timeout_s)
        while not until(seen):
            got = self.client.poll_events(max_events=100)
            if not got.get("success"):
                raise AgentError(f"POLL_EVENTS failed: {got.get('error')}")
            seen.extend(got["events"])
            if not got["events"]:
                if time.monotonic() > end:
                    raise AgentError(f"timed out waiting for events; saw {[e['type'] for e in seen]}")
                time.sleep(IDLE_POLL_S)
        return seen


def is_type(kind: str) -> Match:
    return lambda body: isinstance(body, dict) and body.get("type") == kind


def percentiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p99/max (every value reported is one that occurred)."""
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(len(ordered) * q / 100) - 1)]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1]}


def run(main: Callable[[Agent], dict[str, Any] | None]) -> None:
    """Run `main(agent)`; a driver's returned dict is its result. An exception is reported to the runner
    (when this agent reports to one) and ends the process with status 1."""
    agent = Agent()
    try:
        result = main(agent)
    except Exception as exc:
        traceback.print_exc()
        if "runner_id" in agent.params:
            agent.report({"error": f"{type(exc).__name__}: {exc}"})
        agent.client.disconnect()
        sys.exit(1)
    if result is not None:
        agent.report(result)
    agent.client.disconnect()
