"""Packing between the model's CycleIn/CycleOut and the Core's flat Verilog ports.

One mapping serves amaranth.sim, cocotb and the Verilator harness, so every scoreboard compares the
same things: a `ready` counts only when its `valid` is up, and `disp_agent`/`rdata` only when valid.
"""

from __future__ import annotations

from collections.abc import Callable

from clove_gym.sim.model import CycleIn, CycleOut
from clove_gym.sim.params import HwParams

INPUTS = (
    "enq__valid",
    "enq__payload",
    "disp__ready",
    "send__valid",
    "send__payload",
    "recv__valid",
    "recv__payload",
)
OUTPUTS = ("enq__ready", "disp__valid", "disp__payload", "send__ready", "recv__ready", "rdata_valid", "rdata")


def pack(p: HwParams, inp: CycleIn) -> dict[str, int]:
    """Port values for one cycle (struct fields are packed LSB first, as Amaranth lays them out)."""
    ab = p.agent_bits
    out = dict.fromkeys(INPUTS, 0)
    out["disp__ready"] = int(inp.disp_ready)
    if inp.enq is not None:
        out["enq__valid"], out["enq__payload"] = 1, inp.enq[0] | inp.enq[1] << ab
    if inp.send is not None:
        src, dst, payload, bcast = inp.send
        out["send__valid"] = 1
        out["send__payload"] = src | dst << ab | payload << 2 * ab | int(bcast) << (2 * ab + p.payload_bits)
    if inp.recv is not None:
        out["recv__valid"], out["recv__payload"] = 1, inp.recv
    return out


def unpack(p: HwParams, inp: CycleIn, get: Callable[[str], int]) -> CycleOut:
    """The CycleOut the RTL shows, normalised like the model's."""
    disp_valid = bool(get("disp__valid"))
    rvalid = bool(get("rdata_valid"))
    rdata = get("rdata") if rvalid else 0
    return CycleOut(
        enq_ready=inp.enq is not None and bool(get("enq__ready")),
        disp_valid=disp_valid,
        disp_agent=get("disp__payload") if disp_valid else 0,
        send_ready=inp.send is not None and bool(get("send__ready")),
        recv_ready=inp.recv is not None and bool(get("recv__ready")),
        rdata_valid=rvalid,
        rdata_src=rdata & ((1 << p.agent_bits) - 1),
        rdata_payload=rdata >> p.agent_bits,
    )


def signals(core: object) -> dict[str, object]:
    """Verilog port name -> the Amaranth value of a `hw.core.Core` (for amaranth.sim testbenches)."""
    c = core
    return {
        "enq__valid": c.enq.valid,
        "enq__payload": c.enq.payload.as_value(),
        "enq__ready": c.enq.ready,
        "disp__valid": c.disp.valid,
        "disp__payload": c.disp.payload,
        "disp__ready": c.disp.ready,
        "send__valid": c.send.valid,
        "send__payload": c.send.payload.as_value(),
        "send__ready": c.send.ready,
        "recv__valid": c.recv.valid,
        "recv__payload": c.recv.payload,
        "recv__ready": c.recv.ready,
        "rdata_valid": c.rdata_valid,
        "rdata": c.rdata.as_value(),
    }
