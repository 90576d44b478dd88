"""Unsandboxed agents (runtime/agents.py): a plain child in its own session, signalled as a group."""

from __future__ import annotations

import os
import select
import signal
import sys
import time

from clove_gym.runtime.agents import PlainLauncher, PlainProcess, PlainSpec

KEEPS_RUNNING_ON_SIGTERM = """
import os, signal, time
# os.write, not print: a SIGTERM that lands while print("ready") is still in its flush would make
# print re-enter the same buffered writer, which raises
signal.signal(signal.SIGTERM, lambda *_: os.write(1, b"term\\n"))
print("ready", flush=True)
while True:
    time.sleep(60)
"""


def _lines(fd: int, want: int, timeout: float) -> list[str]:
    """Lines from `fd` until `want` arrived, EOF or `timeout`."""
    out = b""
    deadline = time.monotonic() + timeout
    while out.count(b"\n") < want and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
    return out.decode().splitlines()


def _spawn(code: str) -> tuple[PlainProcess, int]:
    """A plain Python agent running `code`, and the read end of its stdout."""
    r, w = os.pipe()
    try:
        return PlainLauncher().spawn(PlainSpec(1, "p", [sys.executable, "-c", code], {}, None, w)), r
    finally:
        os.close(w)


def test_terminate_sends_sigterm_once_and_kill_counts_the_grace_from_it() -> None:
    proc, r = _spawn(KEEPS_RUNNING_ON_SIGTERM)
    try:
        assert _lines(r, 1, 10.0) == ["ready"]
        proc.terminate()
        assert _lines(r, 1, 5.0) == ["term"]  # sent at once, before any wait
        time.sleep(0.4)
        t0 = time.monotonic()
        assert proc.kill(timeout=1.0) == 128 + signal.SIGKILL  # its handler kept it alive
        assert time.monotonic() - t0 < 0.9  # over 0.4 s of the grace had passed since terminate()
        assert _lines(r, 1, 5.0) == []  # EOF: no second SIGTERM reached it
        proc.terminate()  # after the end: nothing to signal, no error
        assert proc.poll() == 128 + signal.SIGKILL
    finally:
        os.close(r)


LEAVES_A_STRAGGLER = """
import signal, subprocess, time
straggler = subprocess.Popen(["sleep", "60"], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
print(straggler.pid, flush=True)
time.sleep(60)
"""


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_poll_after_terminate_ends_the_rest_of_the_group() -> None:
    """An event loop that sent terminate() learns of the exit by fileno() and poll(), not kill(): the
    first poll() that sees the exit SIGKILLs what is left of the group, as kill() does."""
    proc, r = _spawn(LEAVES_A_STRAGGLER)
    try:
        (straggler,) = map(int, _lines(r, 1, 10.0))
        proc.terminate()
        assert select.select([proc.fileno()], [], [], 5.0)[0]
        assert proc.poll() == 128 + signal.SIGTERM
        deadline = time.monotonic() + 5.0
        while _running(straggler) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _running(straggler), "the straggler outlived the end of its group"
    finally:
        os.close(r)
