"""C fast paths of the runtime (frame codec, data plane, trace ring), built as one CPython extension,
and `clove-init`, the sandbox's pid 1, built as a program beside it.

`load()` returns the compiled module, or None when it is not built or when CLOVE_GYM_NATIVE=0 asks for
the pure-Python twins (which live in clove_gym.runtime and define the behaviour the C code must match).
"""

from __future__ import annotations

import os
from types import ModuleType

_INIT_PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "clove-init")


def load() -> ModuleType | None:
    """The compiled extension, or None (not built, or disabled with CLOVE_GYM_NATIVE=0)."""
    if os.environ.get("CLOVE_GYM_NATIVE", "1") == "0":
        return None
    try:
        from clove_gym.native import _native
    except ImportError:
        return None
    return _native


def init_program() -> str | None:
    """Path of the built `clove-init` program (the sandbox's pid 1), or None (not built, or disabled
    with CLOVE_GYM_NATIVE=0: the sandbox's init then stays the Python twin)."""
    if os.environ.get("CLOVE_GYM_NATIVE", "1") == "0":
        return None
    return _INIT_PROGRAM if os.access(_INIT_PROGRAM, os.X_OK) else None
