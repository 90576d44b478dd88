"""Record and replay at the syscall boundary (spec §2.13 with C2-C4): a VCR-style request/response log.

Recording keeps every dispatched syscall that passes the filter. Replay re-executes the recorded requests
under their recorded agent ids and compares each response with the recorded one, ignoring fields that are
volatile by nature (ages, timestamps, pids, durations). Nondeterministic syscalls (THINK, HTTP, EXEC and
process control) are not re-executed: their recorded responses are served, as a cassette would. Strict
replay stops at the first divergence and reports it; lenient replay counts divergences and goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from clove_gym.runtime.audit import _iso_utc
from clove_gym.runtime.protocol import Op, opcode_name

ALWAYS_EXCLUDED = frozenset(
    {
        Op.LIST,
        Op.GET_PERMS,
        Op.KEYS,
        Op.POLL_EVENTS,
        Op.METRICS_SYSTEM,
        Op.METRICS_AGENT,
        Op.METRICS_ALL_AGENTS,
        Op.METRICS_CGROUP,
        Op.GET_AUDIT_LOG,
        Op.TUNNEL_STATUS,
        Op.TUNNEL_LIST_REMOTES,
        Op.WORLD_LIST,
        Op.WORLD_STATE,
        Op.RECORD_START,
        Op.RECORD_STOP,
        Op.RECORD_STATUS,
        Op.REPLAY_START,
        Op.REPLAY_STATUS,
    }
)
SERVED_NOT_EXECUTED = frozenset(
    {
        Op.THINK,
        Op.HTTP,
        Op.EXEC,
        Op.SPAWN,
        Op.KILL,
        Op.PAUSE,
        Op.RESUME,
        Op.ASYNC_POLL,
        Op.LLM_REPORT,
    }
)
VOLATILE_KEYS = frozenset({"age_ms", "timestamp", "pid", "duration_us", "uptime_ms", "snapshot_time"})
ENTRY_DEFAULTS: dict[str, Any] = {
    "sequence_id": 0,
    "timestamp": "",
    "agent_id": 0,
    "opcode": 0,
    "opcode_name": "",
    "payload": "",
    "response": "",
    "duration_us": 0,
    "success": True,
}


class Recorder:
    def __init__(self) -> None:
        self.state = "IDLE"
        self.include = {"think": False, "http": False, "exec": False}
        self.max_entries = 50_000
        self.filter_agents: set[int] = set()
        self.entries: list[dict[str, Any]] = []
        self._seq = 0

    @property
    def active(self) -> bool:
        return self.state == "RECORDING"

    def configure(self, req: dict[str, Any]) -> None:
        """Apply RECORD_START options (validated; raises ValueError naming the field)."""
        for name in ("think", "http", "exec"):
            key = f"include_{name}"
            if key in req:
                if not isinstance(req[key], bool):
                    raise ValueError(f"'{key}' must be a boolean")
                self.include[name] = req[key]
        if "max_entries" in req:
            value = req["max_entries"]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
                raise ValueError("'max_entries' must be an integer from 1 to 10000000")
            self.max_entries = value
        if "filter_agents" in req:
            ids = req["filter_agents"]
            if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids
            ):
                raise ValueError("'filter_agents' must be a list of agent ids")
            self.filter_agents = set(ids)

    def start(self) -> bool:
        if self.state == "RECORDING":
            return False
        self.entries.clear()
        self._seq = 0
        self.state = "RECORDING"
        return True

    def stop(self) -> bool:
        if self.state != "RECORDING":
            return False
        self.state = "IDLE"
        return True

    def wants(self, agent_id: int, opcode: int) -> bool:
        if not self.active or opcode in ALWAYS_EXCLUDED:
            return False
        if (
            (opcode == Op.THINK and not self.include["think"])
            or (opcode == Op.HTTP and not self.include["http"])
            or (opcode == Op.EXEC and not self.include["exec"])
        ):
            return False
        return not self.filter_agents or agent_id in self.filter_agents

    def add(self, agent_id: int, opcode: int, payload: bytes, response: bytes, duration_ns: int) -> None:
        if len(self.entries) >= self.max_entries:
            return
        self._seq += 1
        text = response.decode("utf-8", "replace")
        self.entries.append(
            {
                "sequence_id": self._seq,
                "timestamp": _iso_utc(time.time()),
                "agent_id": agent_id,
                "opcode": opcode,
                "opcode_name": opcode_name(opcode),
                "payload": payload.decode("utf-8", "replace"),
                "response": text,
                "duration_us": duration_ns // 1000,
                "success": not text.startswith('{"success": false'),
            }
        )

    def export(self) -> str:
        return json.dumps(self.entries)


def _strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


def responses_equal(expected: str, actual: str) -> bool:
    """Equal as JSON after dropping volatile fields (or byte-equal when either is not JSON)."""
    try:
        return _strip_volatile(json.loads(expected)) == _strip_volatile(json.loads(actual))
    except ValueError:
        return expected == actual


class Replayer:
    """Re-executes a recording in steps, so the kernel keeps serving clients meanwhile."""

    def __init__(self) -> None:
        self.state = "idle"
        self.entries: list[dict[str, Any]] = []
        self.current = 0
        self.replayed = 0
        self.skipped = 0
        self.divergences = 0
        self.strict = True
        self.last_error: str | None = None
        self.first_divergence: dict[str, Any] | None = None

    @staticmethod
    def parse(recording: Any) -> list[dict[str, Any]]:
        """Entries from a JSON-array string or a list (raises ValueError naming the bad entry)."""
        if isinstance(recording, str):
            recording = json.loads(recording)
        if not isinstance(recording, list):
            raise ValueError("recording must be a JSON array")
        out = []
        for i, raw in enumerate(recording):
            if not isinstance(raw, dict):
                raise ValueError(f"recording entry {i} is not an object")
            entry = {**ENTRY_DEFAULTS, **raw}
            if not isinstance(entry["opcode"], int) or not isinstance(entry["agent_id"], int):
                raise ValueError(f"recording entry {i}: 'opcode' and 'agent_id' must be integers")
            if not isinstance(entry["payload"], str) or not isinstance(entry["response"], str):
                raise ValueError(f"recording entry {i}: 'payload' and 'response' must be strings")
            out.append(entry)
        return out

    def load(self, entries: list[dict[str, Any]], strict: bool) -> None:
        self.entries = entries
        self.strict = strict
        self.current = self.replayed = self.skipped = self.divergences = 0
        self.last_error = None
        self.first_divergence = None
        self.state = "running" if entries else "completed"

    def fail(self, error: str) -> None:
        """A replay that could not start: state `error` with the reason (callers read `error`)."""
        self.entries = []
        self.current = self.replayed = self.skipped = self.divergences = 0
        self.first_divergence = None
        self.last_error = error
        self.state = "error"

    def step(self, execute: Callable[[int, int, bytes], bytes], budget: int = 200) -> None:
        """Replay up to `budget` entries through `execute(agent_id, opcode, payload) -> response`."""
        while self.state == "running" and budget > 0 and self.current < len(self.entries):
            budget -= 1
            entry = self.entries[self.current]
            self.current += 1
            if entry["opcode"] in SERVED_NOT_EXECUTED:
                self.skipped += 1
                continue
            actual = execute(entry["agent_id"], entry["opcode"], entry["payload"].encode()).decode(
                "utf-8", "replace"
            )
            self.replayed += 1
            if not responses_equal(entry["response"], actual):
                self.divergences += 1
                if self.first_divergence is None:
                    self.first_divergence = {
                        "sequence_id": entry["sequence_id"],
                        "opcode_name": opcode_name(entry["opcode"]),
                        "agent_id": entry["agent_id"],
                        "expected": entry["response"],
                        "actual": actual,
                    }
                    self.last_error = (
                        f"divergence at sequence {entry['sequence_id']} ({opcode_name(entry['opcode'])}, "
                        f"agent {entry['agent_id']}): expected {entry['response'][:200]} got {actual[:200]}"
                    )
                if self.strict:
                    self.state = "error"
                    return
        if self.state == "running" and self.current >= len(self.entries):
            self.state = "completed"

    def status(self) -> dict[str, Any]:
        total = len(self.entries)
        out: dict[str, Any] = {
            "success": True,
            "state": self.state,
            "total_entries": total,
            "current_entry": self.current,
            "entries_replayed": self.replayed,
            "entries_skipped": self.skipped,
            "divergences": self.divergences,
            "progress_percent": (100 * self.current // total)
            if total
            else (100 if self.state == "completed" else 0),
            "progress": (100 * self.current // total) if total else 0,
        }
        if self.last_error:
            out["last_error"] = out["error"] = self.last_error
        if self.first_divergence:
            out["first_divergence"] = self.first_divergence
        return out
