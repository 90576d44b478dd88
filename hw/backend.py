"""The `rtl` scheduler backend: the Verilated Core in the loop, same interface as sim.backends.

`backend(name, params)` is what the runtime calls: `software` (runtime/scheduler.py), `model` (the
golden model), `rtl` (this), `fpga` (a board over the UART host link, hw/hostlink_client.py).
"""

from __future__ import annotations

from clove_gym.sim.backends import ModelBackend, SchedulerBackend, SoftwareBackend, Tick, TickResult
from clove_gym.sim.model import CycleIn
from clove_gym.sim.params import HwParams

from .verilate import RtlStream

BACKENDS = ("software", "model", "rtl", "fpga")


class RtlBackend:
    """One harness process per backend; each tick is one simulated clock cycle."""

    name = "rtl"

    def __init__(self, params: HwParams) -> None:
        self.stream = RtlStream(params)

    def tick(self, t: Tick) -> TickResult:
        out = self.stream.step(CycleIn(enq=t.enq, disp_ready=t.ready))
        return TickResult(out.disp_agent if out.disp_valid and t.ready else None, out.enq_ready)

    def close(self) -> None:
        self.stream.close()


def backend(name: str, params: HwParams, **kw: object) -> SchedulerBackend:
    """A scheduler backend by name; `fpga` takes `port=` (a serial device path)."""
    if name == "software":
        return SoftwareBackend(params)
    if name == "model":
        return ModelBackend(params)
    if name == "rtl":
        return RtlBackend(params)
    if name == "fpga":
        from .hostlink_client import FpgaBackend

        return FpgaBackend(params, **kw)
    raise ValueError(f"backend {name!r}: expected one of {BACKENDS}")
