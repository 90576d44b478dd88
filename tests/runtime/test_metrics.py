"""clove_gym.runtime.metrics: spec §2.11 shapes from the real /proc and cgroup fs, v1/v2 parsing, sanitising."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clove_gym.runtime import metrics
from clove_gym.runtime.metrics import UNLIMITED_MEMORY, cgroup_metrics, process_metrics, system_metrics

PROCESS_SHAPE = {
    "timestamp",
    "pid",
    "ppid",
    "name",
    "state",
    "cmdline",
    "cpu",
    "memory",
    "io",
    "threads",
    "fds",
}


def numbers_only(value: Any, where: str = "") -> None:
    """Every leaf is a JSON number, string, bool or list of numbers: never None (spec: use 0)."""
    if isinstance(value, dict):
        for k, v in value.items():
            numbers_only(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            numbers_only(v, f"{where}[{i}]")
    else:
        assert isinstance(value, int | float | str | bool), f"{where} is {value!r}"


def burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_system_metrics_shape_and_cpu_delta():
    first, sample = system_metrics(None)
    burn_cpu(0.3)
    second, _ = system_metrics(sample)
    assert set(second) == {"timestamp", "cpu", "memory", "swap", "disk", "network"}
    cpu = second["cpu"]
    assert set(cpu) == {"percent", "per_core", "count", "freq_mhz", "load_avg"}
    assert cpu["count"] == os.cpu_count() == len(cpu["per_core"])
    assert 0 < cpu["percent"] <= 100  # this process was busy for the whole interval on one core
    assert all(0 <= p <= 100 for p in cpu["per_core"]) and len(cpu["load_avg"]) == 3
    mem = second["memory"]
    assert set(mem) == {"total", "available", "used", "percent", "buffers", "cached"}
    assert mem["used"] == mem["total"] - mem["available"]
    assert set(second["disk"]) == {"read_bytes", "write_bytes", "read_ops", "write_ops"}
    assert set(second["network"]) == {
        "bytes_sent",
        "bytes_recv",
        "packets_sent",
        "packets_recv",
        "errors_in",
        "errors_out",
    }
    assert abs(second["timestamp"] - time.time() * 1000) < 60_000
    numbers_only(second)
    json.dumps(first)


def test_process_metrics_of_this_process():
    first, sample = process_metrics(os.getpid(), None)
    assert set(first) == PROCESS_SHAPE
    assert first["cpu"]["percent"] == 0.0  # first sample of a pid
    burn_cpu(0.3)
    second, _ = process_metrics(os.getpid(), sample)
    assert second["cpu"]["percent"] > 0  # busy since the first sample (any share: the machine is shared)
    assert second["state"] == "R" and second["ppid"] == os.getppid()
    assert second["memory"]["rss"] > 0 and second["threads"] >= 1 and second["fds"] >= 3
    assert "python" in second["name"] or "pytest" in second["cmdline"]
    assert set(second["cpu"]) == {"percent", "time_user_ms", "time_system_ms", "priority", "nice"}
    assert set(second["memory"]) == {"rss", "vms", "shared", "data", "percent"}
    assert set(second["io"]) == {"read_bytes", "write_bytes", "read_ops", "write_ops"}
    numbers_only(second)


def test_process_metrics_of_stopped_and_gone_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(child.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while process_metrics(child.pid)[0]["state"] != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_metrics(child.pid)[0]["state"] == "T"
    finally:
        child.kill()
        child.wait()
    gone, sample = process_metrics(child.pid)
    assert sample is None
    assert gone["state"] == "?" and gone["pid"] == child.pid and gone["name"] == ""
    assert gone["memory"]["rss"] == 0 and gone["cpu"]["percent"] == 0.0 and gone["threads"] == 0
    numbers_only(gone)


def test_agent_metrics_shape():
    started = time.monotonic() - 1.5
    out, sample = metrics.agent_metrics(
        5, "w", os.getpid(), "running", started, False, kernel_stats={"syscall_count": 9}
    )
    assert out["status"] == "RUNNING" and out["uptime_ms"] >= 1500 and out["cgroup"] is None
    assert out["kernel_stats"] == dict.fromkeys(metrics.KERNEL_STATS, 0) | {"syscall_count": 9}
    assert set(out["process"]) == PROCESS_SHAPE and sample is not None
    json.dumps(out)


# ---- cgroups ---------------------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


V2_GROUP = {
    "cgroup.controllers": "cpu memory pids io\n",
    "clove/a_1/cgroup.procs": "",
    "clove/a_1/cpu.stat": "usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\n"
    "nr_throttled 2\nthrottled_usec 700\n",
    "clove/a_1/cpu.max": "50000 100000\n",
    "clove/a_1/memory.current": "1048576\n",
    "clove/a_1/memory.min": "0\n",
    "clove/a_1/memory.low": "0\n",
    "clove/a_1/memory.high": "max\n",
    "clove/a_1/memory.max": "268435456\n",
    "clove/a_1/memory.peak": "2097152\n",
    "clove/a_1/memory.swap.current": "0\n",
    "clove/a_1/memory.swap.max": "max\n",
    "clove/a_1/memory.events": "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    "clove/a_1/pids.current": "3\n",
    "clove/a_1/pids.max": "64\n",
    "clove/a_1/io.stat": "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"
    "8:16 rbytes=4096 wbytes=0 rios=1 wios=0\n",
}


def test_cgroup_v2_values(tmp_path):
    write_tree(tmp_path, V2_GROUP)
    reply = cgroup_metrics("clove/a_1", root=tmp_path)
    assert reply["success"], reply
    m = reply["metrics"]
    assert (m["cgroup_path"], m["valid"], m["layout"]) == ("clove/a_1", True, "v2")
    assert m["cpu"] == {
        "usage_usec": 5000,
        "user_usec": 3000,
        "system_usec": 2000,
        "throttled_usec": 700,
        "nr_periods": 10,
        "nr_throttled": 2,
        "quota_usec": 50000,
        "period_usec": 100000,
    }
    assert m["memory"] == {
        "current": 1048576,
        "min": 0,
        "low": 0,
        "high": UNLIMITED_MEMORY,
        "max": 268435456,
        "peak": 2097152,
        "swap_current": 0,
        "swap_max": UNLIMITED_MEMORY,
        "oom_kills": 1,
    }
    assert m["pids"] == {"current": 3, "max": 64}
    assert m["io"] == {"read_bytes": 8192, "write_bytes": 8192, "read_ops": 2, "write_ops": 2}
    numbers_only(m)


def test_cgroup_v1_values(tmp_path):
    ticks = os.sysconf("SC_CLK_TCK")
    write_tree(
        tmp_path,
        {
            "cpu,cpuacct/clove/b_2/cpuacct.usage": "7000000\n",
            "cpu,cpuacct/clove/b_2/cpuacct.stat": f"user {ticks}\nsystem {ticks // 2}\n",
            "cpu,cpuacct/clove/b_2/cpu.stat": "nr_periods 5\nnr_throttled 1\nthrottled_time 3000000\n",
            "cpu,cpuacct/clove/b_2/cpu.cfs_quota_us": "-1\n",
            "cpu,cpuacct/clove/b_2/cpu.cfs_period_us": "100000\n",
            "memory/clove/b_2/memory.usage_in_bytes": "4096\n",
            "memory/clove/b_2/memory.limit_in_bytes": "9223372036854771712\n",
            "memory/clove/b_2/memory.max_usage_in_bytes": "8192\n",
            "memory/clove/b_2/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            "pids/clove/b_2/pids.current": "1\n",
            "pids/clove/b_2/pids.max": "max\n",
            "blkio/clove/b_2/blkio.throttle.io_service_bytes": "8:0 Read 100\n8:0 Write 200\n8:0 Total 300\nTotal 300\n",
            "blkio/clove/b_2/blkio.throttle.io_serviced": "8:0 Read 1\n8:0 Write 3\nTotal 4\n",
        },
    )
    m = cgroup_metrics("/clove/b_2", root=tmp_path)["metrics"]
    assert m["layout"] == "v1" and m["cgroup_path"] == "clove/b_2"
    assert m["cpu"] == {
        "usage_usec": 7000,
        "user_usec": 1_000_000,
        "system_usec": (ticks // 2) * 1_000_000 // ticks,
        "throttled_usec": 3000,
        "nr_periods": 5,
        "nr_throttled": 1,
        "quota_usec": 0,
        "period_usec": 100000,
    }
    assert m["memory"]["current"] == 4096 and m["memory"]["peak"] == 8192
    assert m["memory"]["max"] == UNLIMITED_MEMORY and m["memory"]["oom_kills"] == 2
    assert m["pids"] == {"current": 1, "max": -1}
    assert m["io"] == {"read_bytes": 100, "write_bytes": 200, "read_ops": 1, "write_ops": 3}
    # a v1 path given with its controller prefix names the same group
    assert cgroup_metrics("memory/clove/b_2", root=tmp_path)["metrics"]["memory"]["current"] == 4096


def test_cgroup_hybrid_merges_v2_usage_with_v1_throttling(tmp_path):
    write_tree(
        tmp_path,
        {
            "unified/cgroup.controllers": "",
            "unified/g/cpu.stat": "usage_usec 900\nuser_usec 600\nsystem_usec 300\n",
            "cpu/g/cpu.stat": "nr_periods 4\nnr_throttled 4\nthrottled_time 8000\n",
            "cpu/g/cpu.cfs_quota_us": "20000\n",
            "cpu/g/cpu.cfs_period_us": "100000\n",
        },
    )
    m = cgroup_metrics("g", root=tmp_path)["metrics"]
    assert m["layout"] == "v1+v2"
    assert (m["cpu"]["usage_usec"], m["cpu"]["nr_throttled"], m["cpu"]["throttled_usec"]) == (900, 4, 8)
    assert (m["cpu"]["quota_usec"], m["cpu"]["period_usec"]) == (20000, 100000)


@pytest.mark.parametrize("bad", ["../etc", "clove/../../etc", "a/..", "x\0y"])
def test_cgroup_path_escapes_are_refused(tmp_path, bad):
    write_tree(tmp_path, V2_GROUP)
    reply = cgroup_metrics(bad, root=tmp_path)
    assert reply["success"] is False and "cgroup_path" in reply["error"]


def test_cgroup_symlink_escape_and_missing_group(tmp_path):
    root = tmp_path / "cg"
    write_tree(root, {"cgroup.controllers": ""})
    outside = tmp_path / "outside"
    write_tree(outside, {"memory.current": "1\n"})
    (root / "link").symlink_to(outside)
    assert cgroup_metrics("link", root=root) == {
        "success": False,
        "error": "Cgroup not found or not readable",
        "cgroup_path": "link",
    }
    assert cgroup_metrics("clove/agent-9", root=root)["error"] == "Cgroup not found or not readable"


def test_cgroup_of_this_process_on_the_real_hierarchy():
    """The memory cgroup this test runs in, read from the machine's real cgroup filesystem."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    memory = [line.split(":", 2)[2] for line in lines if line.split(":", 2)[1] in ("memory", "")]
    if not Path("/sys/fs/cgroup").is_dir() or not memory:
        pytest.skip("no cgroup filesystem on this machine")
    reply = cgroup_metrics(memory[0])
    assert reply["success"], reply
    assert reply["metrics"]["memory"]["current"] > 0
    numbers_only(reply["metrics"])
