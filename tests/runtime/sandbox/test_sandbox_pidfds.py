"""Signalling the processes a listing names by pid: only those still members once a pidfd holds them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from clove_gym.runtime.sandbox import pidfds

NO_SUCH_PID = 1 << 23  # above the largest pid_max Linux allows (4194304)


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen]]:
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def _sleep(procs: list[subprocess.Popen]) -> subprocess.Popen:
    procs.append(subprocess.Popen(["sleep", "60"]))
    return procs[-1]


def test_a_listed_pid_that_is_no_longer_a_member_is_left_alone(sleepers) -> None:
    (
        member,
        left,
    ) = _sleep(sleepers), _sleep(sleepers)
    asked: list[list[int]] = []

    def members(held: list[int]) -> list[int]:
        asked.append(held)
        return [member.pid]  # `left` was listed, but the listing read again no longer has it

    sent = pidfds.signal_listed([member.pid, left.pid, NO_SUCH_PID, member.pid], signal.SIGKILL, members)
    assert sent == 1 and member.wait(5) == -signal.SIGKILL
    with pytest.raises(subprocess.TimeoutExpired):  # it would be dead within this if it was killed
        left.wait(0.2)
    assert asked == [[member.pid, left.pid]]  # the pid that does not exist is not even held


def test_long_listings_are_held_in_batches_each_checked_again(sleepers, monkeypatch) -> None:
    monkeypatch.setattr(pidfds, "_BATCH", 2)
    procs = [_sleep(sleepers) for _ in range(3)]
    asked: list[list[int]] = []
    sent = pidfds.signal_listed(
        [p.pid for p in procs], signal.SIGKILL, lambda held: asked.append(held) or held
    )
    assert sent == 3 and [p.wait(5) for p in procs] == [-signal.SIGKILL] * 3
    assert asked == [[procs[0].pid, procs[1].pid], [procs[2].pid]]


def test_a_member_gone_before_the_signal_is_skipped_without_error(sleepers) -> None:
    gone = _sleep(sleepers)

    def members(held: list[int]) -> list[int]:
        gone.kill()
        gone.wait()  # reaped while its pidfd is held: the pidfd still names it, not a new holder
        return held

    assert pidfds.signal_listed([gone.pid], signal.SIGKILL, members) == 0


def test_children_lists_every_child_and_nothing_for_a_gone_process() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & sleep 60 & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while len(listed := pidfds.children(shell.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(listed) == 3
        for pid in listed:
            with open(f"/proc/{pid}/stat") as f:
                assert f.read().split()[3] == str(shell.pid)  # the parent's pid
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    assert pidfds.children(shell.pid) == []
