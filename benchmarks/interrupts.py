"""SIGTERM as Ctrl-C for the CLI's long commands (`run suite`, `bench ...`).

A CI timeout or `kill` sends SIGTERM, whose default action ends the process at once: no with-block or
finally runs, so kernels, agents and temp dirs would be left behind. Inside `sigterm_as_interrupt()` it
raises KeyboardInterrupt instead, and the command unwinds and exits with EXIT_INTERRUPTED.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 130


def _raise_interrupt(_signo: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while inside; the previous handler is restored after. Off the
    main thread (where Python cannot set handlers) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
