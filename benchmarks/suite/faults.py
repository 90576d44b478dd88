"""`faults`: a drill for the runner itself. Its first two tasks fail on purpose (one hangs, one crashes
before reporting, each leaving a child behind); the runner must record both, kill every agent they left,
and go on to the last task, which passes. The suite therefore exits 1 by design."""

from __future__ import annotations

from clove_gym.benchmarks.suite.task import Grade, Outcome, Suite, Task


def _echoed(o: Outcome) -> Grade:
    ok = o.report.get("echo") == "still alive"
    return Grade(
        ok, 1.0 if ok else 0.0, "kernel answered after the faults" if ok else f"bad echo: {o.report}"
    )


def _never(o: Outcome) -> Grade:
    return Grade(False, 0.0, f"a fault drill task reported unexpectedly: {o.report}")


FAULTS = Suite(
    name="faults",
    summary="runner fault drill: a hanging task, a crashing task (both fail by design), then a healthy one",
    tasks=(
        Task("hang", "never reports; leaves a sleeping child", "fault_hang.py", _never, timeout_s=5.0),
        Task("crash", "os._exit(3) before reporting; leaves a sleeping child", "fault_crash.py", _never),
        Task("healthy", "NOOP echo after the faults", "fault_ok.py", _echoed),
    ),
)
