"""The kernel's child table on disk, so no agent is ever lost track of.

Every kernel keeps the pids of its live agents in `<dir>/kernel-<pid>.json`, rewritten atomically whenever an
agent starts or ends. A kernel that dies without stopping its agents (SIGKILL, OOM, power cut of the
process) leaves that file behind; the next kernel to start reaps what it lists: an agent still alive with the
same process start time (so a reused pid is never hit) is killed with its process group, and the file goes.
A kernel counts as alive only with its own recorded start time, so a table is not kept forever because
another process took the dead kernel's pid (pid_max may be 32768).
Re-adopting a live agent would need its sandbox handles, which die with the kernel; killing it is the one
safe choice, and it is reported in the audit log.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

_instances = itertools.count(1)  # several kernels may live in one process (tests, notebooks)


def default_dir() -> Path:
    """Per-user directory shared by every kernel of this user on this machine, in memory where there is
    a place for it: the table is rewritten on every spawn and exit, on the kernel's loop, and on a disk
    filesystem each rewrite frees the old file's blocks (with `discard`, a synchronous TRIM: 0.5 ms
    median and 50+ ms tails here, against 0.09 ms on tmpfs). A table only has to outlive the kernel
    process, not a reboot, which ends every agent anyway."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        base = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK) else tempfile.gettempdir()
    return Path(base) / f"clove-gym-kernels-{os.geteuid()}"


_SHM = "/dev/shm"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int, started: int | None) -> bool:
    """Whether process `pid` exists and, when `started` is known, is the one that started then."""
    if started is not None:
        return start_time(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_if_same(pid: int, started: int) -> bool:
    """SIGKILL process `pid` and its process group if it is still the process that started at `started`;
    whether it was. The pidfd is opened before the start time is read, so what is checked is what the
    signal reaches (a bare kill after the check could hit a process that took the pid meanwhile)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone (ESRCH), or not ours to see
        return False
    try:
        if start_time(pid) != started:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # a group keeps its id while it has members
        with contextlib.suppress(ProcessLookupError, PermissionError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    finally:
        os.close(pidfd)


class ChildTable:
    """This kernel's table file."""

    def __init__(self, directory: Path | None = None) -> None:
        self.dir = directory or default_dir()
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.dir / f"kernel-{os.getpid()}-{next(_instances)}.json"
        self._starts: dict[int, int | None] = {}  # pid -> start time, read once per agent process
        self._kernel_start = start_time(os.getpid())

    def save(self, agents: list[dict[str, Any]]) -> None:
        """Record the live agents: [{"id", "name", "pid"}, ...] (start times are added here). A start
        time is read from /proc once per pid, so a save costs O(1) /proc reads, not one per agent."""
        starts = {a["pid"]: self._starts.get(a["pid"]) or start_time(a["pid"]) for a in agents}
        self._starts = starts
        rows = [{**a, "start_time": starts[a["pid"]]} for a in agents]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"kernel_pid": os.getpid(), "kernel_start": self._kernel_start, "agents": rows})
        )
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.path.with_suffix(".tmp").unlink()

    def reap_stale(self) -> list[dict[str, Any]]:
        """Kill the agents of kernels that died without stopping them; returns what was reaped."""
        reaped: list[dict[str, Any]] = []
        for table in sorted(self.dir.glob("kernel-*.json")):
            try:
                data = json.loads(table.read_text())
                kernel_pid = int(data["kernel_pid"])
                kernel_start = data.get("kernel_start")  # absent in tables of older kernels
                if kernel_start is not None and not isinstance(kernel_start, int):
                    raise ValueError(f"kernel_start: {kernel_start!r}")
                rows = list(data["agents"])
            except (OSError, ValueError, KeyError, TypeError):
                table.unlink(missing_ok=True)  # unreadable (torn by a crash): nothing can be trusted in it
                continue
            if _alive(kernel_pid, kernel_start):  # this process's own kernels too
                continue
            for row in rows:
                pid, started = row.get("pid"), row.get("start_time")
                if isinstance(pid, int) and isinstance(started, int) and _kill_if_same(pid, started):
                    reaped.append({**row, "kernel_pid": kernel_pid})
            table.unlink(missing_ok=True)
        return reaped
