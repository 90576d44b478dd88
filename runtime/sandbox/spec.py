"""What a caller asks for when it spawns an agent: resource limits and the spawn specification.

Kept free of OS calls so the kernel can validate a SPAWN request before anything is started.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


class SpawnError(RuntimeError):
    """An agent could not be started; the message says why (shown to the SPAWN caller)."""


# Field -> (minimum, maximum). Units follow the Clove SPAWN `limits` object (spec §2.2).
_LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "memory": (1 << 20, 1 << 50),  # bytes; below 1 MiB not even an interpreter starts
    "max_pids": (1, 1 << 22),
    "cpu_quota": (1000, 1 << 40),  # µs per period (the kernel refuses < 1 ms)
    "cpu_period": (1000, 1_000_000),  # µs, the range cgroups accept
    "cpu_shares": (2, 262144),  # cgroup v1 range; mapped to cpu.weight on v2
}


@dataclass
class Limits:
    """Per-agent resource limits (defaults = the reference kernel's, spec §2.2)."""

    memory: int = 268435456
    max_pids: int = 64
    cpu_quota: int = 100000
    cpu_period: int = 100000
    cpu_shares: int = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(
                    f"limits.{f.name}: expected an integer, got {type(value).__name__} {value!r}"
                )
            low, high = _LIMIT_RANGES[f.name]
            if not low <= value <= high:
                raise ValueError(f"limits.{f.name}: {value} is outside [{low}, {high}]")

    @classmethod
    def from_json(cls, obj: dict[str, Any] | None) -> Limits:
        """Limits from a SPAWN request's `limits` object; missing keys default, unknown keys are ignored
        (as in the reference), wrong types or ranges raise ValueError naming the field."""
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise ValueError(f"limits: expected an object, got {type(obj).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def cpu_weight(self) -> int:
        """cgroup v2 cpu.weight for these shares (reference formula: shares*100/1024 clamped to 1..10000)."""
        return max(1, min(10000, self.cpu_shares * 100 // 1024))


@dataclass
class SpawnSpec:
    """Everything the launcher needs to start one agent process.

    `argv[0]` is an executable (resolved through PATH in `env`); when it is this interpreter
    (`sys.executable`) followed by a script path, the agent is forked from the pre-imported zygote instead
    of exec'ing a fresh interpreter. `stdout_fd`/`stderr_fd` are descriptors of the caller that become the
    agent's fd 1/2 (inherited from the launcher's process when None); stdin is always /dev/null.
    """

    agent_id: int
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    sandboxed: bool = True
    network: bool = False
    limits: Limits = field(default_factory=Limits)
    socket_path: str | None = None
    ro_paths: list[str] = field(default_factory=list)
    rw_paths: list[str] = field(default_factory=list)
    stdout_fd: int | None = None
    stderr_fd: int | None = None
    use_zygote: bool = True

    def __post_init__(self) -> None:
        if (
            isinstance(self.agent_id, bool)
            or not isinstance(self.agent_id, int)
            or not 0 <= self.agent_id < 1 << 32
        ):
            raise ValueError(f"agent_id: expected an integer in [0, 2^32), got {self.agent_id!r}")
        if not isinstance(self.name, str) or not self.name or "/" in self.name or "\0" in self.name:
            raise ValueError(f"name: expected a non-empty string without '/' or NUL, got {self.name!r}")
        if not isinstance(self.argv, list) or not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise ValueError(f"argv: expected a non-empty list of strings, got {self.argv!r}")
        if not isinstance(self.env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()
        ):
            raise ValueError("env: expected a dict of str to str")
        for key in ("cwd", "socket_path"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.startswith("/")):
                raise ValueError(f"{key}: expected an absolute path, got {value!r}")
        for key in ("ro_paths", "rw_paths"):
            paths = getattr(self, key)
            if not isinstance(paths, list) or not all(
                isinstance(p, str) and p.startswith("/") for p in paths
            ):
                raise ValueError(f"{key}: expected a list of absolute paths, got {paths!r}")
        if not isinstance(self.limits, Limits):
            raise ValueError(f"limits: expected a Limits, got {type(self.limits).__name__}")
