"""Per-agent permission records, levels and checks (spec §2.3, §2.9, compatibility profile C1).

Trust follows who connects. A top-level connection (a process of the kernel's own user that the kernel did
not spawn) is an *admin*: it may spawn and may set any rights, its own or anyone's, as Clove SDK programs
expect. A spawned agent (and anything it starts) is not: it gets what its SPAWN request granted, may only
lower its own rights, and only its parent or an admin may change them.

A new connection gets the legacy "standard" level (C1): EXEC of anything not on the block list, READ and
WRITE outside the blocked paths, THINK, no HTTP and no SPAWN rights until granted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

DEFAULT_BLOCKED_PATHS = (
    "/etc/shadow",
    "/etc/passwd",
    "~/.ssh/*",
    "~/.gnupg/*",
    "~/.aws/*",
    "~/.config/gcloud/*",
    "*/.env",
    "*/.git/config",
    "*/credentials*",
    "*/secrets*",
    "*/*token*",
    "*/*password*",
)
DEFAULT_BLOCKED_COMMANDS = (
    "rm -rf /",
    "rm -rf ~",
    "rm -rf /*",
    "sudo",
    "su ",
    "chmod 777",
    "curl | bash",
    "wget | bash",
    "> /dev/sd",
    "dd if=",
    "mkfs",
    ":(){:|:&};:",
    "shutdown",
    "reboot",
    "init 0",
    "poweroff",
)
LEVELS = ("unrestricted", "standard", "sandboxed", "readonly", "minimal")


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fnmatch(FNM_PATHNAME|FNM_NOESCAPE): `*`/`?` never cross `/`. The stdlib's fnmatch lets `*` cross
    `/`, which would widen every allow-list, hence this small translator (compiled patterns are cached)."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _has_dotdot(path: str) -> bool:
    return ".." in path.split("/")


def path_matches(path: str, pattern: str) -> bool:
    """Whether `path` matches a permission glob (`~` expands to $HOME; `..` anywhere never matches)."""
    if pattern.startswith("~"):
        pattern = os.path.expanduser("~") + pattern[1:]
    if _has_dotdot(path) or _has_dotdot(pattern):
        return False
    return _glob_regex(pattern).match(path) is not None


def canonical_read_path(path: str) -> str:
    """READ checks the resolved path (symlinks and `..` resolved) when it exists."""
    return os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)


def canonical_write_path(path: str) -> str:
    """WRITE resolves the parent directory and re-appends the name; a symlink as the name is resolved too,
    so a link pointing outside the allowed globs cannot be written through."""
    if os.path.islink(path):
        return os.path.realpath(path)
    parent, name = os.path.split(os.path.abspath(path))
    parent = os.path.realpath(parent) if os.path.isdir(parent) else parent
    return os.path.join(parent, name)


def _host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


@dataclass
class Permissions:
    """One agent's rights and LLM usage counters."""

    can_exec: bool = True
    can_read: bool = True
    can_write: bool = True
    can_think: bool = True
    can_spawn: bool = False
    can_http: bool = False
    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_PATHS))
    exec: list[str] = field(default_factory=list)  # empty = anything not blocked (legacy standard, C1)
    blocked_commands: list[str] = field(default_factory=lambda: list(DEFAULT_BLOCKED_COMMANDS))
    network: list[str] = field(default_factory=list)
    http_methods: list[str] = field(default_factory=list)
    max_tokens: int = 0
    max_calls: int = 0
    tokens_used: int = 0
    calls_made: int = 0
    max_exec_time_ms: int = 0
    exec_empty_allows_all: bool = True

    # ---- construction -----------------------------------------------------------------------------
    @classmethod
    def for_level(cls, level: str) -> Permissions:
        level = level if level in LEVELS else "standard"
        if level == "unrestricted":
            return cls(
                can_spawn=True,
                can_http=True,
                blocked=[],
                exec=["*"],
                blocked_commands=[],
                network=["*"],
                http_methods=["*"],
            )
        if level == "standard":
            return cls()
        if level == "sandboxed":
            return cls(read=["/tmp/*", "/home/*"], write=["/tmp/*"])
        if level == "readonly":
            return cls(can_exec=False, can_write=False)
        return cls(can_exec=False, can_read=False, can_write=False)  # minimal

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Permissions:
        """A full replacement record (SET_PERMS `permissions`): struct defaults plus the given keys.
        Raises ValueError naming the field on a wrong type."""
        return cls(can_exec=False, blocked=[], blocked_commands=[], exec_empty_allows_all=False).apply(obj)

    def apply(self, obj: dict[str, Any]) -> Permissions:
        """Set the fields `obj` gives (the SET_PERMS shape) on this record; returns it.
        Raises ValueError naming the field on a wrong type."""
        p = self
        for key in ("can_exec", "can_read", "can_write", "can_think", "can_spawn", "can_http"):
            if key in obj:
                setattr(p, key, _bool(obj[key], key))
        fs = obj.get("filesystem")
        if fs is not None:
            if not isinstance(fs, dict):
                raise ValueError("'filesystem' must be an object")
            p.read = _strs(fs.get("read", []), "filesystem.read")
            p.write = _strs(fs.get("write", []), "filesystem.write")
            p.blocked = _strs(fs.get("blocked", []), "filesystem.blocked")
        if "exec" in obj:
            p.exec = _strs(obj["exec"], "exec")
            p.can_exec = True
        if "blocked_commands" in obj:
            p.blocked_commands = _strs(obj["blocked_commands"], "blocked_commands")
        if "network" in obj:
            p.network = _strs(obj["network"], "network")
            p.can_http = p.can_http or bool(p.network)
        if "http_methods" in obj:
            p.http_methods = _strs(obj["http_methods"], "http_methods")
            p.can_http = p.can_http or bool(p.http_methods)
        llm = obj.get("llm")
        if llm is not None:
            if not isinstance(llm, dict):
                raise ValueError("'llm' must be an object")
            p.max_tokens = _uint(llm.get("max_tokens", 0), "llm.max_tokens")
            p.max_calls = _uint(llm.get("max_calls", 0), "llm.max_calls")
        if "max_exec_time_ms" in obj:
            p.max_exec_time_ms = _uint(obj["max_exec_time_ms"], "max_exec_time_ms")
        return p

    def to_json(self) -> dict[str, Any]:
        return {
            "can_exec": self.can_exec,
            "can_read": self.can_read,
            "can_write": self.can_write,
            "can_think": self.can_think,
            "can_spawn": self.can_spawn,
            "can_http": self.can_http,
            "filesystem": {"read": self.read, "write": self.write, "blocked": self.blocked},
            "exec": self.exec,
            "blocked_commands": self.blocked_commands,
            "network": self.network,
            "http_methods": self.http_methods,
            "llm": {
                "max_tokens": self.max_tokens,
                "max_calls": self.max_calls,
                "tokens_used": self.tokens_used,
                "calls_made": self.calls_made,
            },
            "max_exec_time_ms": self.max_exec_time_ms,
        }

    def is_within(self, other: Permissions) -> bool:
        """Whether these rights are no greater than `other`'s (what a non-admin may grant or keep)."""
        for flag in ("can_exec", "can_read", "can_write", "can_think", "can_spawn", "can_http"):
            if getattr(self, flag) and not getattr(other, flag):
                return False
        if not set(other.blocked) <= set(self.blocked):
            return False
        if not set(other.blocked_commands) <= set(self.blocked_commands):
            return False
        for allow in ("read", "write"):  # empty = anything not blocked
            mine, theirs = getattr(self, allow), getattr(other, allow)
            if theirs and (not mine or not set(mine) <= set(theirs)):
                return False
        if not (other.exec == [] and other.exec_empty_allows_all) and "*" not in other.exec:
            if self.exec_empty_allows_all and not self.exec or not set(self.exec) <= set(other.exec):
                return False
        for allow in ("network", "http_methods"):  # empty = nothing
            if "*" not in getattr(other, allow) and not set(getattr(self, allow)) <= set(
                getattr(other, allow)
            ):
                return False
        for quota in ("max_tokens", "max_calls"):  # 0 = unlimited
            if getattr(other, quota) and not 0 < getattr(self, quota) <= getattr(other, quota):
                return False
        return True

    # ---- checks: None = allowed, else the denial text ----------------------------------------------
    def check_read(self, path: str) -> str | None:
        if not self.can_read or not self._path_ok(canonical_read_path(path), self.read):
            return "Permission denied: path not allowed for reading"
        return None

    def check_write(self, path: str) -> str | None:
        if not self.can_write or not self._path_ok(canonical_write_path(path), self.write):
            return "Permission denied: path not allowed for writing"
        return None

    def _path_ok(self, path: str, allow: list[str]) -> bool:
        if _has_dotdot(path) or any(path_matches(path, pat) for pat in self.blocked):
            return False
        return not allow or any(path_matches(path, pat) for pat in allow)

    def check_exec(self, command: str) -> str | None:
        denied = "Permission denied: command not allowed"
        if not self.can_exec or any(b and b in command for b in self.blocked_commands):
            return denied
        if not self.exec:
            return None if self.exec_empty_allows_all else denied
        if "*" in self.exec or any(a and a in command for a in self.exec):
            return None
        return denied

    def check_http(self, method: str, url: str) -> str | None:
        if not self.can_http:
            return "Permission denied: HTTP not allowed"
        if not any(m == "*" or m.upper() == method.upper() for m in self.http_methods):
            return "Permission denied: HTTP method not allowed"
        host = _host_of(url)
        for entry in self.network:
            entry = entry.lower()
            if entry == "*" or entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
                return None
        return f"Permission denied: domain not in whitelist: {host}"

    def check_llm(self, estimate: int = 0) -> bool:
        if not self.can_think:
            return False
        if self.max_calls and self.calls_made >= self.max_calls:
            return False
        return not (self.max_tokens and self.tokens_used + estimate > self.max_tokens)

    def record_llm(self, tokens: int, call: bool = True) -> None:
        self.tokens_used += max(tokens, 0)
        self.calls_made += 1 if call else 0


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"'{name}' must be a boolean")
    return value


def _strs(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'{name}' must be a list of strings")
    return list(value)


def _uint(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"'{name}' must be a non-negative integer")
    return value
