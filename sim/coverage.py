"""Functional coverage of a run, sampled from the golden model's state each cycle.

The bins are the SPEC's corner cases; a scoreboard steps the model through `Coverage.step()`, so the
same bins are reported by amaranth.sim, cocotb and the Verilator harness runs.
"""

from __future__ import annotations

from collections import Counter

from .model import Core, CycleIn, CycleOut


class Coverage:
    def __init__(self, agents: int) -> None:
        self.bins: Counter[str] = Counter()
        self.goals = [f"grant_agent{i}" for i in range(agents)] + [
            "visit_continues",
            "visit_starts",
            "enq_refused_full",
            "all_queues_full",
            "throttled_by_quota",
            "idle_with_consumer_stalled",
            "send_unicast",
            "send_broadcast",
            "broadcast_backpressure",
            "store_full",
            "mailbox_full_refusal",
            "recv_empty",
            "recv_data",
            "send_recv_same_cycle",
            "reset_mid_operation",
        ]

    def step(self, core: Core, inp: CycleIn, reset: bool = False) -> CycleOut:
        """Step the model one cycle (then reset it if `reset`), recording the bins the cycle hits."""
        b = self.bins
        s, m, p = core.sched, core.mbox, core.p
        in_visit, ptr = s.in_visit, s.ptr
        queued, mail = any(s.queues), any(m.queues)
        store_full = True not in m.free
        if all(len(q) >= p.depth for q in s.queues):
            b["all_queues_full"] += 1
        out = core.step(inp)
        if reset:
            core.reset()
            if queued or mail:
                b["reset_mid_operation"] += 1
        if out.disp_valid and inp.disp_ready:
            b[f"grant_agent{out.disp_agent}"] += 1
            b["visit_continues" if in_visit and ptr == out.disp_agent else "visit_starts"] += 1
        if inp.enq is not None and not out.enq_ready:
            b["enq_refused_full"] += 1
        if queued and not out.disp_valid:
            b["throttled_by_quota"] += 1
        if out.disp_valid and not inp.disp_ready:
            b["idle_with_consumer_stalled"] += 1
        if inp.send is not None:
            bcast = inp.send[3]
            if out.send_ready:
                b["send_broadcast" if bcast else "send_unicast"] += 1
            elif store_full:
                b["store_full"] += 1
            elif bcast:
                b["broadcast_backpressure"] += 1
            else:
                b["mailbox_full_refusal"] += 1
        if inp.recv is not None:
            b["recv_data" if out.recv_ready else "recv_empty"] += 1
            if out.recv_ready and out.send_ready:
                b["send_recv_same_cycle"] += 1
        return out

    def report(self) -> dict:
        hit = [g for g in self.goals if self.bins[g]]
        return {
            "hit": len(hit),
            "goals": len(self.goals),
            "ratio": len(hit) / len(self.goals),
            "missed": [g for g in self.goals if not self.bins[g]],
            "bins": dict(sorted(self.bins.items())),
        }
