"""The kernel's THINK queue decided by a hardware scheduler backend: the runtime's DecisionSource
(runtime/sched_backend.py) over the per-cycle tick interface of sim/backends.py.

Declared as the entry points `rtl` (the Verilated Core in the loop), `fpga` (the board over the host
link) and `model` (the golden model) of the group `clove_gym.scheduler_backends`, so the runtime finds
them by name without importing `hw`. Options (`--scheduler rtl:params=FILE,depth=16`): `params=` a
parameter file (`hw analyze` writes one; default: HwParams()), any integer field of HwParams, `weights=`
as `1/2/1/2`, and for `fpga` `port=` (serial device) and `timeout=` (seconds per frame). For `fpga`
the parameters must be those the board's bitstream was built with.

How the runtime's queue maps onto the backend (and where the backend's limits show):

* **Agents -> slots.** The backend has N = `agents` slots, ring order = slot order. An agent takes
  the lowest free slot of its weight above every slot in use (so slot order = join order), else the
  lowest free slot of its weight. With none free, it takes the least recently used slot of its weight
  whose agent has nothing queued (the kernel never removes agents, so without this the N+1-th agent
  ever to THINK would be refused for good); the evicted agent gets a slot again at its next enqueue.
  Only when every slot of that weight holds queued requests is the agent refused with ValueError
  (the THINK is answered with that reason).
* **Weights** are fixed per slot at build time (`weights`, default all 1): an agent needs a slot of
  its weight. **Costs** must be 1..`max_cost` (ValueError otherwise, as software refuses a cost
  above the burst).
* **Calls -> cycles.** Each call is one clock cycle: `enqueue` = `Tick(enq=(slot, cost),
  ready=False)`, accepted iff the slot held fewer than `depth` requests at the start of the cycle
  (else False: backpressure, the kernel answers "queue full, retry"); `dispatch` =
  `Tick(ready=True)`, the grant. No decision happens in an enqueue's cycle, so the backend sees
  exactly the software queue's sequence of enqueues and decisions.
* **Token buckets.** The backend's buckets refill per cycle, not per second: `bucket_rate` must be 0
  (refused at start) and the runtime refuses agents' `rate_per_s` for non-software backends.
  Without buckets a deficit never exceeds quantum x weight <= 255 x 15, so the RTL's 16-bit
  deficit cannot overflow.
* **Removal.** The hardware cannot drop a slot's queue. A removed agent's slot is *draining*: grants
  of its leftover requests are taken and discarded inside `dispatch` (extra cycles), and the slot is
  reused only once empty.
* **Checks.** Queue lengths are tracked here; an acceptance or a grant that contradicts them raises
  (the runtime then fails every THINK with the reason rather than decide by software).

Equal to the software Scheduler (quantum 1, depth 64 in the kernel: use quantum=1 and no backlog
above `depth`) for the same calls while agents only join (never removed, never more than the slots
of their weight, so nobody is evicted) and every agent joins before the ring wraps past the newest
one (e.g. all join before the first dispatch). The software ring holds only the agents that joined,
the hardware ring all N slots: when the software pointer wraps from the newest agent back to the
first and a new agent then joins, software serves the newcomer last in that round and the hardware
(pointer resting on the next, so-far empty slot) serves it first. Both are the same DRR; only the
newcomer's place in that round differs. Removals and evictions likewise change ring positions.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clove_gym.sim.backends import ModelBackend, SchedulerBackend, Tick
from clove_gym.sim.params import HwParams, ParamsError

_INT_FIELDS = tuple(f.name for f in dataclasses.fields(HwParams) if f.type in ("int", int))


class TickDecisions:
    """A runtime DecisionSource over a tick backend (see the module docstring for the mapping)."""

    def __init__(self, backend: SchedulerBackend, params: HwParams) -> None:
        self.p = runtime_params(params)
        self.backend = backend
        self.name = backend.name
        self.owner: list[int | None] = [None] * params.agents  # slot -> agent id
        self.queued = [0] * params.agents  # requests held by the backend per slot
        self.used = [0] * params.agents  # slot -> tick of its last enqueue (least recently used)
        self.slot: dict[int, int] = {}  # agent id -> slot (an evicted agent has none until it enqueues)
        self.weight: dict[int, int] = {}  # every added agent's weight
        self.ticks = 0

    def add_agent(self, agent_id: int, weight: int) -> None:
        self._place(agent_id, weight)
        self.weight[agent_id] = weight

    def remove_agent(self, agent_id: int) -> None:
        del self.weight[agent_id]
        if agent_id in self.slot:
            self.owner[self.slot.pop(agent_id)] = None  # its queued requests drain in dispatch()

    def enqueue(self, agent_id: int, cost: int) -> bool:
        if not 1 <= cost <= self.p.max_cost:
            raise ValueError(
                f"scheduler backend {self.name!r}: agent {agent_id}: cost {cost} is outside 1..max_cost"
                f" ({self.p.max_cost})"
            )
        slot = self.slot.get(agent_id)
        if slot is None:
            slot = self._place(agent_id, self.weight[agent_id])
        room = self.queued[slot] < self.p.depth
        self.ticks += 1
        self.used[slot] = self.ticks
        accepted = self.backend.tick(Tick((slot, cost), ready=False)).accepted
        if accepted != room:
            raise RuntimeError(
                f"slot {slot} holds {self.queued[slot]} of depth {self.p.depth} but the backend"
                f" {'accepted' if accepted else 'refused'} an enqueue"
            )
        self.queued[slot] += accepted
        return accepted

    def dispatch(self) -> int | None:
        while True:
            self.ticks += 1
            grant = self.backend.tick(Tick(None, ready=True)).grant
            if grant is None:
                return None
            if not self.queued[grant]:
                raise RuntimeError(f"the backend granted slot {grant}, which holds no request")
            self.queued[grant] -= 1
            agent = self.owner[grant]
            if agent is not None:
                return agent
            # a removed agent's leftover request: its grant is discarded, decide again

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def _place(self, agent_id: int, weight: int) -> int:
        """Give the agent a slot of its weight: a free one, else the least recently used idle one."""
        mine = [s for s in range(self.p.agents) if self.p.weight(s) == weight]
        weights = list(self.p.weights) or "all 1"
        if not mine:
            raise ValueError(
                f"scheduler backend {self.name!r}: agent {agent_id} has weight {weight}, but no slot has"
                f" (slot weights {weights}; set them with weights=... in the backend's parameters)"
            )
        free = [s for s in mine if self.owner[s] is None and not self.queued[s]]
        idle = [s for s in mine if self.owner[s] is not None and not self.queued[s]]
        if free:
            held = [s for s in range(self.p.agents) if self.owner[s] is not None or self.queued[s]]
            slot = next((s for s in free if s > max(held, default=-1)), free[0])
        elif idle:
            slot = min(idle, key=self.used.__getitem__)
            del self.slot[self.owner[slot]]  # type: ignore[index]
        else:
            raise ValueError(
                f"scheduler backend {self.name!r}: no slot of weight {weight} for agent {agent_id}: all"
                f" {len(mine)} such of the {self.p.agents} slots (weights {weights}) hold queued requests"
            )
        self.owner[slot] = agent_id
        self.slot[agent_id] = slot
        return slot


def runtime_params(params: HwParams) -> HwParams:
    """`params`, or ParamsError when the runtime cannot drive them (the RTL's own limits, buckets)."""
    params.validate()
    if params.bucket_rate:
        raise ParamsError(
            f"bucket_rate={params.bucket_rate}: the runtime needs bucket_rate=0 (the hardware's"
            " buckets refill per cycle and one queue call is one cycle, not wall time)"
        )
    return params


def params_of(options: dict[str, str], extra: tuple[str, ...] = ()) -> HwParams:
    """HwParams from `params=FILE` and per-field overrides; options named in `extra` are left alone."""
    unknown = sorted(set(options) - {"params", "weights", *_INT_FIELDS, *extra})
    if unknown:
        raise ParamsError(
            f"unknown option(s) {unknown}: expected params=FILE, weights=1/2/..., {_INT_FIELDS}"
        )
    params = HwParams.load(options["params"]) if "params" in options else HwParams()
    changes: dict[str, Any] = {}
    try:
        for key in _INT_FIELDS:
            if key in options:
                changes[key] = int(options[key])
        if "weights" in options:
            changes["weights"] = tuple(int(w) for w in options["weights"].split("/"))
    except ValueError as exc:
        raise ParamsError(f"option not an integer: {exc}") from None
    return runtime_params(dataclasses.replace(params, **changes))


def rtl(options: dict[str, str]) -> TickDecisions:
    """The Verilated Core in the loop (builds or reuses the harness; ToolchainError without Verilator)."""
    from .backend import RtlBackend

    params = params_of(options)
    return TickDecisions(RtlBackend(params), params)


def fpga(options: dict[str, str]) -> TickDecisions:
    """The board's scheduler over the UART host link (LinkError when no board answers)."""
    from .hostlink_client import FpgaBackend

    params = params_of(options, extra=("port", "timeout"))
    kw: dict[str, Any] = {"port": options["port"]} if "port" in options else {}
    if "timeout" in options:
        kw["timeout"] = float(options["timeout"])
    return TickDecisions(FpgaBackend(params, **kw), params)


def model(options: dict[str, str]) -> TickDecisions:
    """The golden model (sim/model.py) in the loop: the reference the RTL is checked against."""
    params = params_of(options)
    return TickDecisions(ModelBackend(params), params)
