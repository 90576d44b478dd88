"""The embedded kernel: started in this process on first use, on a private socket, stopped at exit.

Library users and `clove-gym run suite` need no daemon (design decision 2). The socket lives in a private
temporary directory that is removed, with everything else the kernel made, when the interpreter exits.
"""

from __future__ import annotations

import atexit
import threading

from clove_gym.runtime.kernel import Kernel

_lock = threading.Lock()
_kernel: Kernel | None = None


def kernel(**options: object) -> Kernel:
    """The process's embedded kernel, started on the first call (later options are ignored)."""
    global _kernel
    with _lock:
        if _kernel is None:
            _kernel = Kernel(**options).start()  # type: ignore[arg-type]
            atexit.register(shutdown)
        return _kernel


def socket_path() -> str:
    """The private socket of the embedded kernel, starting it if needed."""
    return kernel().socket_path


def shutdown() -> None:
    """Stop the embedded kernel (idempotent; also runs at interpreter exit)."""
    global _kernel
    with _lock:
        if _kernel is not None:
            _kernel.stop()
            _kernel = None
