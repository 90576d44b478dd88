"""Shared helpers for the C-vs-twin tests: a pair of data planes driven in lockstep."""

from __future__ import annotations

from typing import Any

import pytest
from clove_gym.native import _native as C  # not built = every test here errors, never skips
from clove_gym.runtime import dataplane as D


def outcome(fn, *args, **kw) -> tuple[str, Any]:
    """The result, or the exception type: what both implementations must agree on."""
    try:
        return ("ok", fn(*args, **kw))
    except Exception as exc:  # noqa: BLE001 - comparing exception types is the point
        return ("raised", type(exc))


class Recorder:
    """A Python trace sink keeping every record() call, to compare the calls of both planes."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(self, *args: Any, **kw: Any) -> None:
        self.calls.append((args, kw))


class PlanePair:
    """The twin and the C DataPlane fed the same calls; every result and all state must agree."""

    def __init__(self, trace: bool = True, **kw: Any) -> None:
        self.py = D.DataPlane(**kw)
        self.c = C.DataPlane(**kw)
        self.py_rec, self.c_rec = Recorder(), Recorder()
        if trace:
            self.py.set_trace(self.py_rec)
            self.c.set_trace(self.c_rec)

    def call(self, name: str, *args: Any, **kw: Any) -> tuple[str, Any]:
        py = outcome(getattr(self.py, name), *args, **kw)
        c = outcome(getattr(self.c, name), *args, **kw)
        assert c == py, f"{name}{args!r}: C {c!r} != twin {py!r}"
        return py

    def check_state(self, ids=(0, 1, 2, 3, 4, 5)) -> None:
        assert self.c.names() == self.py.names()
        assert list(self.c.names()) == list(self.py.names())
        assert self.c.store_size() == self.py.store_size()
        assert (self.c.mailbox_limit, self.c.store_limit) == (self.py.mailbox_limit, self.py.store_limit)
        for i in ids:
            assert self.c.mailbox_len(i) == self.py.mailbox_len(i), i
            assert self.c.stats(i) == self.py.stats(i), i
            assert self.c.has_agent(i) == self.py.has_agent(i), i
        assert self.c_rec.calls == self.py_rec.calls


@pytest.fixture
def pair() -> PlanePair:
    return PlanePair()


@pytest.fixture(scope="session")
def make_pair() -> type[PlanePair]:
    return PlanePair
