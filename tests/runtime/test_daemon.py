"""`clove-gym kernel start|status|stop` as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

CLI = [sys.executable, "-m", "clove_gym.benchmarks.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, env=env)


def test_daemon_lifecycle_and_socket_override(tmp_path):
    sock = str(tmp_path / "daemon.sock")
    assert run("kernel", "status", "--socket", sock).returncode == 3
    (tmp_path / "daemon.sock").touch()  # a stale socket file is replaced
    started = run("kernel", "start", "--socket", sock, "--trace", str(tmp_path / "t.clvtrace"))
    assert started.returncode == 0, started.stderr
    try:
        again = run("kernel", "start", "--socket", sock)
        assert again.returncode == 1 and "live kernel" in again.stderr  # never stolen
        env = {**os.environ, "CLOVE_SOCKET": sock}
        status = run("kernel", "status", env=env)
        assert status.returncode == 0 and "running: pid" in status.stdout
    finally:
        stopped = run("kernel", "stop", "--socket", sock)
    assert stopped.returncode == 0, stopped.stderr
    assert not os.path.exists(sock)
    assert (tmp_path / "t.clvtrace").stat().st_size >= 32  # trace flushed at a clean stop
    assert run("kernel", "stop", "--socket", sock).returncode == 1


def test_every_subcommand_has_help():
    for args in (
        ["--help"],
        ["kernel", "--help"],
        ["kernel", "start", "--help"],
        ["kernel", "stop", "--help"],
        ["kernel", "status", "--help"],
        ["kernel", "run", "--help"],
        ["trace", "--help"],
    ):
        result = run(*args)
        assert result.returncode == 0 and "usage:" in result.stdout, args
