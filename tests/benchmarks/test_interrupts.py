"""SIGTERM as Ctrl-C for the CLI's long commands."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from clove_gym.benchmarks.interrupts import sigterm_as_interrupt


def test_sigterm_raises_keyboardinterrupt_inside_and_the_old_handler_returns_after() -> None:
    seen: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signo, _frame: seen.append(signo))
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once and its exception ends the sleep
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_off_the_main_thread_it_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    during: list[object] = []

    def worker() -> None:
        with sigterm_as_interrupt():
            during.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert during == [before] and signal.getsignal(signal.SIGTERM) is before
