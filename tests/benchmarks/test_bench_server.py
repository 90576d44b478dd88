"""The benchmark kernel process: it never outlives the benchmark that started it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

STARTER = textwrap.dedent("""
    import json, sys, time
    from clove_gym.benchmarks.bench_server import KernelProcess
    k = KernelProcess(sys.argv[1])
    print(json.dumps({"pid": k.pid}), flush=True)
    time.sleep(60)
""")


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def test_a_killed_benchmark_leaves_no_kernel_behind(tmp_path) -> None:
    """SIGKILL of the benchmark process (a CI timeout, `kill -9`): its kernel gets SIGTERM from the
    kernel itself (parent-death signal) and shuts down cleanly, removing its socket."""
    sock = str(tmp_path / "k.sock")
    starter = subprocess.Popen([sys.executable, "-c", STARTER, sock], stdout=subprocess.PIPE)
    try:
        kernel_pid = json.loads(starter.stdout.readline())["pid"]  # type: ignore[union-attr]
        assert os.path.exists(sock) and psutil.pid_exists(kernel_pid)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        assert _gone(kernel_pid, 10.0), "the kernel outlived the benchmark that started it"
        assert not os.path.exists(sock), "the kernel did not shut down cleanly (socket left)"
    finally:
        starter.kill()
        starter.wait(10)
        starter.stdout.close()  # type: ignore[union-attr]
