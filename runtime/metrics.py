"""Data for METRICS_SYSTEM / METRICS_AGENT / METRICS_CGROUP, in the exact shapes of spec §2.11.

System and process figures come from psutil (which reads /proc); cgroup figures are read by hand from
the cgroup filesystem because no library reads both layouts: v2 (unified, the common case) and v1
(one hierarchy per controller, as on this project's machines), merged file by file.

CPU percentages are deltas between two samples; the caller keeps the `CpuSample` each call returns
and passes it back next time. Every number is a JSON number; a process that is gone yields zeros and
state "?", never an exception.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED_MEMORY = 2**64 - 1  # memory.max "max"
_V1_UNLIMITED_FLOOR = 2**62  # v1 writes "unlimited" as a page-rounded LONG_MAX
_V1_CONTROLLERS = ("cpu", "cpuacct", "cpu,cpuacct", "memory", "pids", "blkio", "freezer")
_SKIPPED_DISKS = ("loop", "ram", "zram", "dm-", "sr", "fd")
KERNEL_STATS = (
    "syscall_count",
    "llm_calls",
    "llm_tokens_used",
    "messages_sent",
    "messages_recv",
    "bytes_read",
    "bytes_written",
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative busy and total time, one slot per counter (system: overall then each core; process: one)."""

    busy: tuple[float, ...]
    total: tuple[float, ...]

    def percents(self, prev: CpuSample | None) -> list[float]:
        """Busy share in % of each slot since `prev` (since boot/start when prev is None or mismatched)."""
        same = prev is not None and len(prev.busy) == len(self.busy)
        out = []
        for i, (busy, total) in enumerate(zip(self.busy, self.total, strict=True)):
            d_busy = busy - (prev.busy[i] if same else 0.0)  # type: ignore[union-attr]
            d_total = total - (prev.total[i] if same else 0.0)  # type: ignore[union-attr]
            out.append(round(100.0 * d_busy / d_total, 2) if d_total > 0 else 0.0)
        return out


def _now_ms() -> int:
    return int(time.time() * 1000)


def _busy_total(t: Any) -> tuple[float, float]:
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)  # guest times are already included in user/nice
    total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)
    return total - idle, total


def cpu_sample() -> CpuSample:
    overall = _busy_total(psutil.cpu_times())
    cores = [_busy_total(t) for t in psutil.cpu_times(percpu=True)]
    return CpuSample(
        busy=(overall[0], *(c[0] for c in cores)),
        total=(overall[1], *(c[1] for c in cores)),
    )


def system_metrics(prev: CpuSample | None = None) -> tuple[dict[str, Any], CpuSample]:
    """METRICS_SYSTEM `metrics` object, and the CPU sample to pass as `prev` next time."""
    sample = cpu_sample()
    percents = sample.percents(prev)
    freq = psutil.cpu_freq()
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    disks = [
        d
        for name, d in psutil.disk_io_counters(perdisk=True, nowrap=True).items()
        if not name.startswith(_SKIPPED_DISKS)
    ]
    nics = [n for name, n in psutil.net_io_counters(pernic=True, nowrap=True).items() if name != "lo"]
    used = vm.total - vm.available
    metrics = {
        "timestamp": _now_ms(),
        "cpu": {
            "percent": percents[0],
            "per_core": percents[1:],
            "count": psutil.cpu_count() or len(percents) - 1,
            "freq_mhz": float(freq.current) if freq else 0.0,
            "load_avg": [round(x, 2) for x in os.getloadavg()],
        },
        "memory": {
            "total": vm.total,
            "available": vm.available,
            "used": used,
            "percent": round(100.0 * used / vm.total, 2) if vm.total else 0.0,
            "buffers": getattr(vm, "buffers", 0),
            "cached": getattr(vm, "cached", 0),
        },
        "swap": {"total": swap.total, "used": swap.used, "free": swap.free},
        "disk": {
            "read_bytes": sum(d.read_bytes for d in disks),
            "write_bytes": sum(d.write_bytes for d in disks),
            "read_ops": sum(d.read_count for d in disks),
            "write_ops": sum(d.write_count for d in disks),
        },
        "network": {
            "bytes_sent": sum(n.bytes_sent for n in nics),
            "bytes_recv": sum(n.bytes_recv for n in nics),
            "packets_sent": sum(n.packets_sent for n in nics),
            "packets_recv": sum(n.packets_recv for n in nics),
            "errors_in": sum(n.errin for n in nics),
            "errors_out": sum(n.errout for n in nics),
        },
    }
    return metrics, sample


def _gone_process(pid: int) -> dict[str, Any]:
    return {
        "timestamp": _now_ms(),
        "pid": pid,
        "ppid": 0,
        "name": "",
        "state": "?",
        "cmdline": "",
        "cpu": {"percent": 0.0, "time_user_ms": 0, "time_system_ms": 0, "priority": 0, "nice": 0},
        "memory": {"rss": 0, "vms": 0, "shared": 0, "data": 0, "percent": 0.0},
        "io": {"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0},
        "threads": 0,
        "fds": 0,
    }


def _state_priority(pid: int) -> tuple[str, int]:
    """One-letter state and scheduling priority from /proc/<pid>/stat (psutil maps the first to words
    and does not expose the second)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?", 0
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "; comm may contain spaces
    return (fields[0], int(fields[15])) if len(fields) > 15 else ("?", 0)


def process_metrics(pid: int, prev: CpuSample | None = None) -> tuple[dict[str, Any], CpuSample | None]:
    """ProcessMetrics of `pid` and its CPU sample (None when the process is gone: all zeros, state "?")."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            sample = CpuSample(busy=(times.user + times.system,), total=(time.monotonic(),))
            mem = proc.memory_info()
            try:
                io = proc.io_counters()
                io_fields = {
                    "read_bytes": io.read_bytes,
                    "write_bytes": io.write_bytes,
                    "read_ops": io.read_count,
                    "write_ops": io.write_count,
                }
            except (psutil.AccessDenied, AttributeError):
                io_fields = {"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0}
            try:
                fds = proc.num_fds()
            except psutil.AccessDenied:
                fds = 0
            state, priority = _state_priority(pid)
            metrics = {
                "timestamp": _now_ms(),
                "pid": pid,
                "ppid": proc.ppid(),
                "name": proc.name(),
                "state": state,
                "cmdline": " ".join(proc.cmdline()),
                "cpu": {
                    "percent": sample.percents(prev)[0] if prev is not None else 0.0,
                    "time_user_ms": int(times.user * 1000),
                    "time_system_ms": int(times.system * 1000),
                    "priority": priority,
                    "nice": proc.nice(),
                },
                "memory": {
                    "rss": mem.rss,
                    "vms": mem.vms,
                    "shared": getattr(mem, "shared", 0),
                    "data": getattr(mem, "data", 0),
                    "percent": round(proc.memory_percent(), 2),
                },
                "io": io_fields,
                "threads": proc.num_threads(),
                "fds": fds,
            }
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return _gone_process(pid), None
    return metrics, sample


def agent_metrics(
    agent_id: int,
    name: str,
    pid: int,
    status: str,
    started_monotonic: float,
    sandboxed: bool,
    prev: CpuSample | None = None,
    cgroup_path: str | None = None,
    kernel_stats: dict[str, int] | None = None,
) -> tuple[dict[str, Any], CpuSample | None]:
    """AgentMetrics of a spawned agent (METRICS_AGENT / METRICS_ALL_AGENTS entries) and its CPU sample."""
    process, sample = process_metrics(pid, prev) if pid > 0 else (_gone_process(pid), None)
    cgroup = cgroup_metrics(cgroup_path) if cgroup_path else None
    stats = dict.fromkeys(KERNEL_STATS, 0) | (kernel_stats or {})
    metrics = {
        "timestamp": _now_ms(),
        "agent_id": agent_id,
        "name": name,
        "pid": pid,
        "status": status.upper(),
        "uptime_ms": max(0, int((time.monotonic() - started_monotonic) * 1000)),
        "sandboxed": sandboxed,
        "process": process,
        "cgroup": cgroup["metrics"] if cgroup and cgroup.get("success") else None,
        "kernel_stats": stats,
    }
    return metrics, sample


# ---- cgroups ---------------------------------------------------------------------------------------


class CgroupPathError(ValueError):
    """A cgroup path that would leave the cgroup filesystem."""


def sanitize_cgroup_path(rel_path: str) -> str:
    """`rel_path` as a clean relative path: leading '/' dropped, '.' removed; '..' or NUL refused."""
    if not isinstance(rel_path, str) or "\0" in rel_path:
        raise CgroupPathError(f"invalid cgroup_path {rel_path!r}")
    parts = [p for p in rel_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise CgroupPathError(f"cgroup_path must not contain '..': {rel_path!r}")
    return "/".join(parts)


def _within(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


class _Group:
    """One cgroup seen through every hierarchy it exists in: v2 files first, v1 files as fallback."""

    def __init__(self, root: Path, rel: str) -> None:
        parts = rel.split("/") if rel else []
        if parts and parts[0] in _V1_CONTROLLERS:  # "memory/clove/x": a v1 path given with its controller
            parts = parts[1:]
        group = "/".join(parts)
        v2_root = root if (root / "cgroup.controllers").exists() else root / "unified"
        candidates = [v2_root / group] + [root / c / group for c in _V1_CONTROLLERS]
        self.dirs = [d for d in candidates if d.is_dir() and _within(root, d)]
        self.v2 = (
            bool(self.dirs) and self.dirs[0] == v2_root / group and (v2_root / "cgroup.controllers").exists()
        )

    def read(self, name: str) -> str | None:
        for d in self.dirs:
            try:
                return (d / name).read_text()
            except OSError:
                continue
        return None

    def number(self, name: str) -> int | None:
        text = self.read(name)
        if text is None:
            return None
        text = text.strip()
        if text == "max":
            return -1
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            return None

    def keyed(self, name: str) -> dict[str, int]:
        """A flat-keyed file ("key value" lines) merged over every hierarchy, earlier ones winning.

        Merged because on hybrid hosts v2's cpu.stat has only usage while v1's has the throttling.
        """
        out: dict[str, int] = {}
        for d in reversed(self.dirs):
            try:
                text = (d / name).read_text()
            except OSError:
                continue
            for line in text.splitlines():
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    out[key] = int(value)
        return out


def _memory_limit(value: int | None) -> int:
    if value is None or value < 0 or value >= _V1_UNLIMITED_FLOOR:
        return UNLIMITED_MEMORY
    return value


def _cpu(g: _Group) -> dict[str, int]:
    stat = g.keyed("cpu.stat")
    cpu = {
        "usage_usec": stat.get("usage_usec", 0),
        "user_usec": stat.get("user_usec", 0),
        "system_usec": stat.get("system_usec", 0),
        "throttled_usec": stat.get("throttled_usec", stat.get("throttled_time", 0) // 1000),
        "nr_periods": stat.get("nr_periods", 0),
        "nr_throttled": stat.get("nr_throttled", 0),
        "quota_usec": 0,
        "period_usec": 100000,
    }
    if "usage_usec" not in stat:  # v1: cpuacct counts ns and USER_HZ ticks
        cpu["usage_usec"] = (g.number("cpuacct.usage") or 0) // 1000
        ticks = g.keyed("cpuacct.stat")
        cpu["user_usec"] = ticks.get("user", 0) * 1_000_000 // _CLK_TCK
        cpu["system_usec"] = ticks.get("system", 0) * 1_000_000 // _CLK_TCK
    cpu_max = g.read("cpu.max")
    if cpu_max is not None:
        quota, _, period = cpu_max.strip().partition(" ")
        cpu["quota_usec"] = 0 if quota == "max" else int(quota)
        cpu["period_usec"] = int(period or 100000)
    else:
        quota_v1 = g.number("cpu.cfs_quota_us")
        cpu["quota_usec"] = quota_v1 if quota_v1 and quota_v1 > 0 else 0
        cpu["period_usec"] = g.number("cpu.cfs_period_us") or 100000
    return cpu


def _memory(g: _Group) -> dict[str, int]:
    current = g.number("memory.current")
    if current is not None:  # v2
        events = g.keyed("memory.events")
        return {
            "current": current,
            "min": max(g.number("memory.min") or 0, 0),
            "low": max(g.number("memory.low") or 0, 0),
            "high": _memory_limit(g.number("memory.high")),
            "max": _memory_limit(g.number("memory.max")),
            "peak": max(g.number("memory.peak") or 0, 0),
            "swap_current": max(g.number("memory.swap.current") or 0, 0),
            "swap_max": _memory_limit(g.number("memory.swap.max")),
            "oom_kills": events.get("oom_kill", 0),
        }
    usage = g.number("memory.usage_in_bytes") or 0
    memsw = g.number("memory.memsw.usage_in_bytes")
    return {
        "current": usage,
        "min": 0,
        "low": 0,
        "high": UNLIMITED_MEMORY,
        "max": _memory_limit(g.number("memory.limit_in_bytes")),
        "peak": g.number("memory.max_usage_in_bytes") or 0,
        "swap_current": max(memsw - usage, 0) if memsw is not None else 0,
        "swap_max": _memory_limit(g.number("memory.memsw.limit_in_bytes")),
        # v1 leaves memory.failcnt at 0 after an OOM kill; oom_control counts the kills
        "oom_kills": g.keyed("memory.oom_control").get("oom_kill", 0),
    }


def _io(g: _Group) -> dict[str, int]:
    io = {"read_bytes": 0, "write_bytes": 0, "read_ops": 0, "write_ops": 0}
    stat = g.read("io.stat")
    if stat is not None:  # v2: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.."
        names = {"rbytes": "read_bytes", "wbytes": "write_bytes", "rios": "read_ops", "wios": "write_ops"}
        for line in stat.splitlines():
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key in names and value.isdigit():
                    io[names[key]] += int(value)
        return io
    for name, suffix in (("blkio.throttle.io_service_bytes", "bytes"), ("blkio.throttle.io_serviced", "ops")):
        for line in (g.read(name) or "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in ("Read", "Write") and parts[2].isdigit():
                io[f"{parts[1].lower()}_{suffix}"] += int(parts[2])
    return io


def cgroup_metrics(rel_path: str, root: Path | str = CGROUP_ROOT) -> dict[str, Any]:
    """The METRICS_CGROUP reply for `rel_path` (relative to the cgroup root, v1, v2 or both)."""
    try:
        rel = sanitize_cgroup_path(rel_path)
    except CgroupPathError as exc:
        return {"success": False, "error": str(exc), "cgroup_path": str(rel_path)}
    group = _Group(Path(root), rel)
    if not group.dirs:
        return {"success": False, "error": "Cgroup not found or not readable", "cgroup_path": rel}
    pids_max = group.number("pids.max")
    metrics = {
        "timestamp": _now_ms(),
        "cgroup_path": rel,
        "valid": True,
        "layout": "v2" if group.v2 and len(group.dirs) == 1 else ("v1+v2" if group.v2 else "v1"),
        "cpu": _cpu(group),
        "memory": _memory(group),
        "pids": {
            "current": group.number("pids.current") or 0,
            "max": -1 if pids_max is None else pids_max,
        },
        "io": _io(group),
    }
    return {"success": True, "metrics": metrics}
