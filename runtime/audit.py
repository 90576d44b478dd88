"""The audit log (spec §2.13): an in-memory ring with category filters, mirrored to an append-only JSONL file.

The file gets one `write(2)` per entry, so a kernel killed with SIGKILL leaves every earlier entry intact;
`read_audit_file` ignores a torn last line.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from typing import Any

CATEGORIES = ("SECURITY", "AGENT_LIFECYCLE", "IPC", "STATE_STORE", "RESOURCE", "SYSCALL", "NETWORK", "WORLD")
_FLAG_OF = {
    "SECURITY": "log_security",
    "AGENT_LIFECYCLE": "log_lifecycle",
    "IPC": "log_ipc",
    "STATE_STORE": "log_state",
    "RESOURCE": "log_resource",
    "SYSCALL": "log_syscalls",
    "NETWORK": "log_network",
    "WORLD": "log_world",
}
DEFAULT_CONFIG: dict[str, Any] = {
    "max_entries": 10_000,
    "log_syscalls": False,
    "log_security": True,
    "log_lifecycle": True,
    "log_ipc": False,
    "log_state": False,
    "log_resource": True,
    "log_network": False,
    "log_world": False,
}


def _iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class AuditLog:
    def __init__(self, path: str | None = None) -> None:
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self._entries: deque[dict[str, Any]] = deque(maxlen=self.config["max_entries"])
        self._next_id = 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if path else -1
        self.path = path

    def enabled(self, category: str) -> bool:
        return bool(self.config[_FLAG_OF[category]])

    def log(
        self,
        category: str,
        event_type: str,
        agent_id: int,
        details: Any = None,
        success: bool = True,
        agent_name: str = "",
    ) -> None:
        if not self.enabled(category):
            return
        entry: dict[str, Any] = {
            "id": self._next_id,
            "timestamp": _iso_utc(time.time()),
            "category": category,
            "event_type": event_type,
            "agent_id": agent_id,
        }
        if agent_name:
            entry["agent_name"] = agent_name
        entry["success"] = success
        entry["details"] = details
        self._next_id += 1
        self._entries.append(entry)
        if self._fd >= 0:
            os.write(self._fd, (json.dumps(entry) + "\n").encode())

    def query(self, category: str | None, agent_id: int, since_id: int, limit: int) -> list[dict[str, Any]]:
        """The most recent `limit` matching entries, oldest first."""
        out = [
            e
            for e in self._entries
            if (category is None or e["category"] == category)
            and (not agent_id or e["agent_id"] == agent_id)
            and e["id"] > since_id
        ]
        return out[-limit:] if limit > 0 else []

    def configure(self, changes: dict[str, Any]) -> None:
        """Apply a validated subset of the config (raises ValueError naming a bad key or type)."""
        for key, value in changes.items():
            if key not in DEFAULT_CONFIG:
                raise ValueError(f"unknown audit config key '{key}'")
            if key == "max_entries":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
                    raise ValueError("'max_entries' must be an integer from 1 to 1000000")
            elif not isinstance(value, bool):
                raise ValueError(f"'{key}' must be a boolean")
        self.config.update(changes)
        if self._entries.maxlen != self.config["max_entries"]:
            self._entries = deque(self._entries, maxlen=self.config["max_entries"])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_audit_file(path: str) -> list[dict[str, Any]]:
    """Entries of an audit JSONL file; a torn or corrupt last line (crash) is ignored."""
    out: list[dict[str, Any]] = []
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                out.append(json.loads(line))
            except ValueError:
                break
    return out
