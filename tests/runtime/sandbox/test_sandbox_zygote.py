"""The zygote's loop, driven without starting one (no subreaper or signal setup in the test process)."""

from __future__ import annotations

import os
import socket

from clove_gym.runtime.sandbox import zygote as zmod


def _bare_zygote(pool_size: int) -> tuple[zmod.Zygote, socket.socket, int]:
    z = zmod.Zygote.__new__(zmod.Zygote)
    z.control, launcher = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    z.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    z.slots, z.slot_failures, z.slot_binds = {}, 0, []
    z.config = {"pool_size": pool_size, "mechanism": "rlimit"}
    return z, launcher, wake_w


def test_refill_yields_to_a_waiting_spawn_or_exit(monkeypatch) -> None:
    """A slot start holds the zygote ~2 ms: with a request (or an exit's wake-up) pending, refill starts
    none, and the loop serves it first."""

    def no_fork() -> int:
        raise AssertionError("refill started a slot while a request waited")

    monkeypatch.setattr(zmod.os, "fork", no_fork)
    z, launcher, wake_w = _bare_zygote(pool_size=4)
    try:
        zmod.send(launcher, {"op": "spawn", "plan": {}})
        z.refill()
        assert z.slots == {}
        zmod.recv(z.control)
        os.write(wake_w, b"\0")
        z.refill()
        assert z.slots == {}
    finally:
        for fd in (z.wake_r, wake_w):
            os.close(fd)
        z.control.close()
        launcher.close()


def test_readable_answers_as_select_would() -> None:
    """zygote.readable: what is readable or at EOF within the timeout, as the objects it was given;
    nothing when the timeout passes first. (Its point, descriptors above 1023, is exercised end to end
    in test_sandbox_launcher.py.)"""
    r, w = os.pipe()
    a, b = socket.socketpair()
    try:
        assert zmod.readable([r, a], 0) == []
        assert zmod.readable([r, a], 0.05) == []
        b.send(b"x")
        assert zmod.readable([r, a], 0) == [a]  # the socket object back, not its number
        os.close(w)
        assert sorted(zmod.readable([r, a], None), key=id) == sorted([r, a], key=id)  # EOF counts
    finally:
        os.close(r)
        a.close()
        b.close()
