"""Per-agent control groups: cgroup v2 where its controllers are usable, v1 where that is what is mounted.

One `Cgroup` per agent holds its limits, freezes and kills its whole tree and reports METRICS_CGROUP
figures (spec §2.11). The child joins by writing "0" to every `join_files` entry before it forks
anything, so no descendant can escape the limits. When neither hierarchy is writable the launcher falls
back to rlimits (`mechanism = "rlimit"`, no Cgroup object).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from . import pidfds
from .spec import Limits

CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct", "freezer")
_V1_REQUIRED = ("memory", "pids", "cpu", "freezer")
_V2_REQUIRED = ("memory", "pids", "cpu")
_UNLIMITED_U64 = 2**64 - 1


def _read(path: str) -> str:
    return pidfds.read_all(path).decode()  # on the zygote's exit path: oom_kill before the report


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@contextlib.contextmanager
def _unless_removed() -> Iterator[None]:
    """Ignore a write to a group removed meanwhile (the zygote removes a group as soon as it has reaped
    the agent's init, which a kill may race with): ENOENT once the directory is gone, ENODEV while the
    kernel is still tearing its files down."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.ENODEV):
            raise


def _read_int(path: str, default: int = 0) -> int:
    try:
        text = _read(path).strip()
    except OSError:
        return default
    if text == "max":
        return -1
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return default


def _read_kv(path: str) -> dict[str, int]:
    try:
        lines = _read(path).splitlines()
    except OSError:
        return {}
    out: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Sleep with exponential steps (never spin) until `condition` holds; TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    delay = 0.0001
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def v2_mount() -> str | None:
    """Where the unified hierarchy is mounted (the root itself on pure v2 systems, `unified/` on hybrids)."""
    for path in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "unified")):
        if os.path.exists(os.path.join(path, "cgroup.controllers")):
            return path
    return None


def v2_usable() -> bool:
    """True when the unified hierarchy offers memory, pids and cpu and we may create groups in it."""
    mount = v2_mount()
    if mount is None or not os.access(mount, os.W_OK):
        return False
    try:
        available = set(_read(os.path.join(mount, "cgroup.controllers")).split())
    except OSError:
        return False
    return all(c in available for c in _V2_REQUIRED)


def v1_usable() -> bool:
    """True when the v1 memory, pids, cpu and freezer hierarchies are mounted and writable."""
    return all(
        os.path.exists(os.path.join(CGROUP_ROOT, c, "cgroup.procs"))
        and os.access(os.path.join(CGROUP_ROOT, c), os.W_OK)
        for c in _V1_REQUIRED
    )


def empty_metrics(rel: str, mechanism: str, valid: bool = False) -> dict[str, Any]:
    """The METRICS_CGROUP `metrics` object with every figure 0 (no cgroup, or one that is gone)."""
    return {
        "timestamp": int(time.time() * 1000),
        "cgroup_path": rel,
        "valid": valid,
        "mechanism": mechanism,
        "cpu": dict.fromkeys(
            (
                "usage_usec",
                "user_usec",
                "system_usec",
                "throttled_usec",
                "nr_periods",
                "nr_throttled",
                "quota_usec",
                "period_usec",
            ),
            0,
        ),
        "memory": dict.fromkeys(
            ("current", "min", "low", "high", "max", "peak", "swap_current", "swap_max", "oom_kills"), 0
        ),
        "pids": {"current": 0, "max": -1},
        "io": dict.fromkeys(("read_bytes", "write_bytes", "read_ops", "write_ops"), 0),
    }


class Cgroup(ABC):
    """One agent's control group(s). `rel` is the path relative to each hierarchy's root."""

    mechanism = ""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.procs_files: list[str] = []
        self.dirs: list[str] = []

    @property
    def join_files(self) -> list[str]:
        """What a single-threaded process writes "0" to in order to join (itself, and what it forks)."""
        return self.procs_files

    @abstractmethod
    def create(self, limits: Limits) -> dict[str, bool]: ...

    @abstractmethod
    def set_limits(self, limits: Limits) -> dict[str, bool]: ...

    @abstractmethod
    def rename(self, rel: str) -> None: ...

    def describe(self) -> dict[str, str]:
        return {"mechanism": self.mechanism, "rel": self.rel, "mount": getattr(self, "_mount", "")}

    @abstractmethod
    def freeze(self) -> None: ...

    @abstractmethod
    def thaw(self) -> None: ...

    @abstractmethod
    def frozen(self) -> bool: ...

    @abstractmethod
    def oom_kills(self) -> int: ...

    @abstractmethod
    def metrics(self) -> dict[str, Any]: ...

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in _read(self.procs_files[0]).split()]
        except (OSError, IndexError):
            return []

    def kill_all(self) -> None:
        """SIGKILL every process in the group, including frozen ones (v1 tasks die once thawed). Each
        is held by a pidfd and found in the group again before the kill, so a pid that a member freed
        after the first read is never signalled in another process."""
        pidfds.signal_listed(self.pids(), signal.SIGKILL, lambda _held: self.pids())
        self.thaw()

    def remove(self, timeout: float = 2.0) -> bool:
        """Remove the directories, killing stragglers if one is still busy; True when all are gone.
        Waits (sleeping, never spinning) while the kernel finishes tearing the last tasks down.
        rmdir comes first: after a reaped init the group is empty, and reading a v1 cgroup.procs
        builds a pid list that the rmdir then has to flush through a kworker (320 us against 160 us
        per removal of four v1 groups)."""
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while True:
            for d in list(self.dirs):
                try:
                    os.rmdir(d)
                    self.dirs.remove(d)
                except FileNotFoundError:
                    self.dirs.remove(d)
                except OSError:
                    pass
            if not self.dirs:
                return True
            if self.pids():
                self.kill_all()
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


class CgroupV1(Cgroup):
    """v1: one directory per controller (memory, pids, cpu, cpuacct, freezer)."""

    mechanism = "cgroup1"

    def _dir(self, controller: str) -> str:
        return os.path.join(CGROUP_ROOT, controller, self.rel)

    @property
    def join_files(self) -> list[str]:
        """`tasks`, not `cgroup.procs`: v1 moves the writing thread alone without the global threadgroup
        lock when the pid written is 0 (cgroup_procs_write_start). `cgroup.procs` takes that lock,
        which can wait an RCU grace period while holding cgroup_mutex, stalling every cgroup mkdir,
        rmdir and rename on the machine (spawns, exits, the pool's refill) and every fork. The joiner
        is a fresh fork of the single-threaded zygote, so its one thread is the whole process."""
        return [os.path.join(os.path.dirname(p), "tasks") for p in self.procs_files]

    def create(self, limits: Limits) -> dict[str, bool]:
        for c in V1_CONTROLLERS:
            if not os.path.isdir(os.path.join(CGROUP_ROOT, c)):
                continue
            d = self._dir(c)
            os.makedirs(d, exist_ok=True)
            self.dirs.append(d)
        self._index()
        return self.set_limits(limits)

    def _index(self) -> None:
        self.procs_files = sorted(
            (os.path.join(d, "cgroup.procs") for d in self.dirs), key=lambda p: "/freezer/" not in p
        )

    def rename(self, rel: str) -> None:
        """Give a warm slot's group the agent's name (a rename within each hierarchy, no migration)."""
        moved = []
        for d in self.dirs:
            target = d[: len(d) - len(self.rel)] + rel
            os.rename(d, target)
            moved.append(target)
        self.rel, self.dirs = rel, moved
        self._index()

    def set_limits(self, limits: Limits) -> dict[str, bool]:
        mem, pids, cpu = self._dir("memory"), self._dir("pids"), self._dir("cpu")
        if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):  # no escape into swap; memsw >= limit
            _write(f"{mem}/memory.memsw.limit_in_bytes", "-1")
        _write(f"{mem}/memory.limit_in_bytes", str(limits.memory))
        if os.path.exists(f"{mem}/memory.memsw.limit_in_bytes"):
            _write(f"{mem}/memory.memsw.limit_in_bytes", str(limits.memory))
        _write(f"{pids}/pids.max", str(limits.max_pids))
        _write(f"{cpu}/cpu.cfs_period_us", str(limits.cpu_period))
        _write(f"{cpu}/cpu.cfs_quota_us", str(limits.cpu_quota))
        _write(f"{cpu}/cpu.shares", str(limits.cpu_shares))
        return {"memory_limit": True, "cpu_quota": True, "pids_limit": True}

    def freeze(self) -> None:
        state = os.path.join(self._dir("freezer"), "freezer.state")
        _write(state, "FROZEN")
        wait_for(lambda: _read(state).strip() == "FROZEN", "freezer.state FROZEN")  # FREEZING meanwhile

    def thaw(self) -> None:
        with _unless_removed():
            _write(os.path.join(self._dir("freezer"), "freezer.state"), "THAWED")

    def frozen(self) -> bool:
        try:
            return _read(os.path.join(self._dir("freezer"), "freezer.state")).strip() == "FROZEN"
        except OSError:
            return False

    def oom_kills(self) -> int:
        # v1 quirk (design.md): memory.failcnt stays 0 after an OOM kill; oom_control counts it.
        return _read_kv(os.path.join(self._dir("memory"), "memory.oom_control")).get("oom_kill", 0)

    def metrics(self) -> dict[str, Any]:
        m = empty_metrics(self.rel, self.mechanism, bool(self.dirs))
        mem, cpu, acct = self._dir("memory"), self._dir("cpu"), self._dir("cpuacct")
        hz = os.sysconf("SC_CLK_TCK")
        stat = _read_kv(f"{acct}/cpuacct.stat")
        throttle = _read_kv(f"{cpu}/cpu.stat")
        quota = _read_int(f"{cpu}/cpu.cfs_quota_us")
        m["cpu"].update(
            usage_usec=_read_int(f"{acct}/cpuacct.usage") // 1000,
            user_usec=stat.get("user", 0) * 1_000_000 // hz,
            system_usec=stat.get("system", 0) * 1_000_000 // hz,
            throttled_usec=throttle.get("throttled_time", 0) // 1000,
            nr_periods=throttle.get("nr_periods", 0),
            nr_throttled=throttle.get("nr_throttled", 0),
            quota_usec=max(quota, 0),
            period_usec=_read_int(f"{cpu}/cpu.cfs_period_us"),
        )
        limit = _read_int(f"{mem}/memory.limit_in_bytes")
        m["memory"].update(
            current=_read_int(f"{mem}/memory.usage_in_bytes"),
            high=_UNLIMITED_U64,
            max=limit if 0 <= limit < 1 << 62 else _UNLIMITED_U64,
            peak=_read_int(f"{mem}/memory.max_usage_in_bytes"),
            swap_max=_UNLIMITED_U64,
            oom_kills=self.oom_kills(),
        )
        m["pids"].update(
            current=_read_int(f"{self._dir('pids')}/pids.current"),
            max=_read_int(f"{self._dir('pids')}/pids.max", -1),
        )
        return m


class CgroupV2(Cgroup):
    """v2: one directory in the unified hierarchy; freezing and killing use cgroup.freeze/cgroup.kill."""

    mechanism = "cgroup2"

    def __init__(self, rel: str, mount: str) -> None:
        super().__init__(rel)
        self.path = os.path.join(mount, rel)
        self._mount = mount
        self._wanted: list[str] = list(_V2_REQUIRED)

    def create(self, limits: Limits) -> dict[str, bool]:
        available = set(_read(os.path.join(self._mount, "cgroup.controllers")).split())
        wanted = [c for c in _V2_REQUIRED if c in available]
        # Enable the controllers down to our parent; groups on the way hold no processes (v2 rule).
        parts = self.rel.split("/")
        for depth in range(len(parts)):
            d = os.path.join(self._mount, *parts[:depth])
            os.makedirs(d, exist_ok=True)
            enabled = set(_read(os.path.join(d, "cgroup.subtree_control")).split())
            missing = [c for c in wanted if c not in enabled]
            if missing:
                _write(os.path.join(d, "cgroup.subtree_control"), " ".join("+" + c for c in missing))
        os.makedirs(self.path, exist_ok=True)
        self.dirs.append(self.path)
        self.procs_files.append(os.path.join(self.path, "cgroup.procs"))
        self._wanted = wanted
        return self.set_limits(limits)

    def rename(self, rel: str) -> None:
        target = os.path.join(self._mount, rel)
        os.rename(self.path, target)
        self.rel, self.path, self.dirs = rel, target, [target]
        self.procs_files = [os.path.join(target, "cgroup.procs")]

    def set_limits(self, limits: Limits) -> dict[str, bool]:
        wanted = self._wanted
        applied = {"memory_limit": False, "cpu_quota": False, "pids_limit": False}
        if "memory" in wanted:
            _write(f"{self.path}/memory.max", str(limits.memory))
            if os.path.exists(f"{self.path}/memory.swap.max"):
                _write(f"{self.path}/memory.swap.max", "0")
            applied["memory_limit"] = True
        if "pids" in wanted:
            _write(f"{self.path}/pids.max", str(limits.max_pids))
            applied["pids_limit"] = True
        if "cpu" in wanted:
            _write(f"{self.path}/cpu.max", f"{limits.cpu_quota} {limits.cpu_period}")
            _write(f"{self.path}/cpu.weight", str(limits.cpu_weight()))
            applied["cpu_quota"] = True
        return applied

    def freeze(self) -> None:
        _write(f"{self.path}/cgroup.freeze", "1")
        wait_for(self.frozen, "cgroup.events frozen 1")

    def thaw(self) -> None:
        with _unless_removed():
            _write(f"{self.path}/cgroup.freeze", "0")

    def frozen(self) -> bool:
        return _read_kv(f"{self.path}/cgroup.events").get("frozen") == 1

    def kill_all(self) -> None:
        if os.path.exists(f"{self.path}/cgroup.kill"):  # Linux >= 5.14: atomic, frozen tasks included
            with _unless_removed():
                _write(f"{self.path}/cgroup.kill", "1")
            return
        super().kill_all()

    def oom_kills(self) -> int:
        return _read_kv(f"{self.path}/memory.events").get("oom_kill", 0)

    def metrics(self) -> dict[str, Any]:
        m = empty_metrics(self.rel, self.mechanism, bool(self.dirs))
        p = self.path
        stat = _read_kv(f"{p}/cpu.stat")
        try:
            quota_text, period_text = _read(f"{p}/cpu.max").split()
        except (OSError, ValueError):
            quota_text, period_text = "max", "0"
        m["cpu"].update(
            usage_usec=stat.get("usage_usec", 0),
            user_usec=stat.get("user_usec", 0),
            system_usec=stat.get("system_usec", 0),
            throttled_usec=stat.get("throttled_usec", 0),
            nr_periods=stat.get("nr_periods", 0),
            nr_throttled=stat.get("nr_throttled", 0),
            quota_usec=0 if quota_text == "max" else int(quota_text),
            period_usec=int(period_text),
        )

        def u64(name: str) -> int:
            value = _read_int(f"{p}/{name}")
            return _UNLIMITED_U64 if value == -1 else value

        m["memory"].update(
            current=u64("memory.current"),
            min=u64("memory.min"),
            low=u64("memory.low"),
            high=u64("memory.high"),
            max=u64("memory.max"),
            peak=u64("memory.peak"),
            swap_current=u64("memory.swap.current"),
            swap_max=u64("memory.swap.max"),
            oom_kills=self.oom_kills(),
        )
        m["pids"].update(current=_read_int(f"{p}/pids.current"), max=_read_int(f"{p}/pids.max", -1))
        return m


def attach(desc: dict[str, str]) -> Cgroup:
    """The Cgroup described by `Cgroup.describe()`, for another process (the zygote) to clean up."""
    group: Cgroup
    if desc["mechanism"] == "cgroup2":
        group = CgroupV2(desc["rel"], desc["mount"])
        candidates = [group.path]
    else:
        group = CgroupV1(desc["rel"])
        candidates = [group._dir(c) for c in V1_CONTROLLERS]
    group.dirs = [d for d in candidates if os.path.isdir(d)]
    group.procs_files = sorted(
        (os.path.join(d, "cgroup.procs") for d in group.dirs), key=lambda p: "/freezer/" not in p
    )
    return group


def new(mechanism: str, rel: str, v2_mount: str | None) -> Cgroup:
    """An (uncreated) group of the given mechanism at `rel`."""
    return CgroupV2(rel, v2_mount or "") if mechanism == "cgroup2" else CgroupV1(rel)
