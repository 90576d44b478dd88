"""Spawned agents: the table the kernel keeps (SPAWN/KILL/LIST/PAUSE/RESUME) and the plain launcher.

The plain launcher starts an unsandboxed child process (its own session, so signals reach its whole tree)
and watches it through a pidfd, never a bare pid. The sandboxed launcher (runtime/sandbox) has the same
interface: `spawn(spec) -> process` with `pid`, `fileno()`, `poll()`, `pause()`, `resume()`, `kill()`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clove_gym.runtime import fdlimit

COMPAT_DIR = str(Path(__file__).resolve().parent / "_compat")  # provides `clove_sdk` (C5)

RESTART_POLICIES = {"always": "always", "on-failure": "on-failure", "on_failure": "on-failure"}


class SpawnError(RuntimeError):
    """A spawn request that could not be carried out; str() says why."""


class AgentProcessLike(Protocol):
    pid: int
    isolation: dict[str, Any]

    def fileno(self) -> int:
        """Readable once poll() is likely to have the exit status; poll() may still say None (then
        wait() blocks until it has it)."""
        ...

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int | None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def terminate(self) -> None: ...
    def kill(self, timeout: float = 5.0) -> int: ...


@dataclass
class PlainSpec:
    agent_id: int
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    stdout_fd: int | None = None  # becomes the child's fd 1 and 2 (inherited when None)


def _status_of(returncode: int) -> int:
    """Exit status as the kernel reports it: the exit code, or 128+signo for a death by signal."""
    return 128 - returncode if returncode < 0 else returncode


class PlainProcess:
    """An unsandboxed child in its own session; its pidfd becomes readable when it exits."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pidfd = os.pidfd_open(popen.pid)
        self.isolation: dict[str, Any] = {
            "fully_isolated": False,
            "namespaces": {"pid": False, "net": False, "mnt": False, "uts": False},
            "cgroups": {"available": False, "memory_limit": False, "cpu_quota": False, "pids_limit": False},
            "degraded_reason": "sandboxed=false: plain child process",
            "mechanism": "none",
        }
        self.status: int | None = None
        self._term_at: float | None = None  # when terminate() sent SIGTERM

    def fileno(self) -> int:
        return self.pidfd

    def poll(self) -> int | None:
        """Exit status once the child has exited, else None; never blocks. After terminate(), the
        first call that sees the exit also SIGKILLs what is left of the group, as kill() does."""
        if self.status is None:
            rc = self._popen.poll()
            if rc is not None:
                self.status = _status_of(rc)
                self._close_fd()
                if self._term_at is not None:
                    self._signal_group(signal.SIGKILL)  # stragglers of the group
        return self.status

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the child exits (status) or `timeout` seconds pass (None)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)
        return self.poll()

    def _signal_group(self, signo: int) -> None:
        """`signo` to the child's process group, the child included: as a session leader it cannot
        leave the group, and until we reap it its pid (so the group id) cannot be reused. Sent once:
        sending it through the pidfd as well delivered a handled signal twice."""
        with contextlib.suppress(OSError):  # the group is gone
            os.killpg(self.pid, signo)

    def pause(self) -> None:
        self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal_group(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM to the whole group now, once, without waiting (continued, in case it is paused);
        kill() then counts its grace period from here."""
        if self._term_at is None and self.poll() is None:
            self._term_at = time.monotonic()
            self._signal_group(signal.SIGTERM)
            self._signal_group(signal.SIGCONT)

    def kill(self, timeout: float = 5.0) -> int:
        """SIGTERM to the whole group (unless terminate() sent it), SIGKILL `timeout` seconds after it."""
        if self.poll() is not None:
            return self.status  # type: ignore[return-value]
        self.terminate()
        sent = self._term_at or time.monotonic()  # None only if it exited meanwhile
        try:
            self._popen.wait(max(0.0, sent + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        return self.poll()  # type: ignore[return-value]

    def _close_fd(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class PlainLauncher:
    def spawn(self, spec: PlainSpec) -> PlainProcess:
        try:
            popen = subprocess.Popen(
                spec.argv,
                env=spec.env,
                cwd=spec.cwd,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                stdout=spec.stdout_fd,
                stderr=spec.stdout_fd,
            )
        except OSError as exc:
            raise SpawnError(f"failed to spawn agent: {exc.strerror or exc}") from None
        fdlimit.restore(popen.pid)
        return PlainProcess(popen)

    def close(self) -> None:
        """Nothing pooled: each process is killed through its own handle."""


@dataclass
class ManagedAgent:
    id: int
    name: str
    script: str
    proc: AgentProcessLike
    parent_id: int
    restart_policy: str
    max_restarts: int
    restart_window: int
    request: dict[str, Any]
    state: str = "RUNNING"
    created: float = field(default_factory=time.monotonic)
    sandboxed: bool = False
    watch_fd: int = -1  # the pidfd registered with the kernel's selector
    launch: Any = None  # starts a new incarnation (same id, same config) for restarts
    restarts: int = 0

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "pid": self.proc.pid,
            "state": self.state,
            "running": self.state in ("RUNNING", "PAUSED"),
            "restarts": self.restarts,
            "limits_mechanism": self.proc.isolation.get("mechanism", "none"),
        }


def child_argv(script: str, interpreter: str | None, socket_path: str) -> list[str]:
    """`<python> <script> <socket>` (spec §2.2). The default interpreter is this one (never a slow shim);
    an executable that is not a .py script runs directly."""
    if interpreter in (None, "", "python3", "python"):
        if not script.endswith(".py") and os.path.isfile(script) and os.access(script, os.X_OK):
            return [script, socket_path]
        interpreter = sys.executable
    return [interpreter, script, socket_path]


def child_env(base: dict[str, str], socket_path: str, agent_id: int, name: str) -> dict[str, str]:
    """The caller's environment plus the kernel socket, identity, and our SDKs at the END of PYTHONPATH
    so an installed clove_sdk wins (C5)."""
    env = dict(base)
    env["CLOVE_SOCKET"] = socket_path
    env["CLOVE_AGENT_ID"] = str(agent_id)
    env["CLOVE_AGENT_NAME"] = name
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    for extra in (COMPAT_DIR,):
        if extra not in paths:
            paths.append(extra)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env
