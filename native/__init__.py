"""C fast paths of the runtime (frame codec, data plane, trace ring), built as one CPython extension.

`load()` returns the compiled module, or None when it is not built or when CLOVE_GYM_NATIVE=0 asks for
the pure-Python twins (which live in clove_gym.runtime and define the behaviour the C code must match).
"""

from __future__ import annotations

import os
from types import ModuleType


def load() -> ModuleType | None:
    """The compiled extension, or None (not built, or disabled with CLOVE_GYM_NATIVE=0)."""
    if os.environ.get("CLOVE_GYM_NATIVE", "1") == "0":
        return None
    try:
        from clove_gym.native import _native
    except ImportError:
        return None
    return _native
