"""Broadcast fan-out: one BROADCAST per round reaches every worker; each acknowledges it to the driver."""

import time

from suite_helpers import Agent, is_type, percentiles, run


def main(agent: Agent) -> dict:
    workers = int(agent.params["workers"])
    rounds = int(agent.params["rounds"])
    for n in range(workers):
        agent.spawn(f"w{n}", "fanout_worker.py")
    agent.receive_n(workers, is_type("ready"), timeout_s=30)
    delivered, acks, round_us = [], {}, []
    for rnd in range(rounds):
        t0 = time.perf_counter_ns()
        reply = agent.client.broadcast({"type": "work", "round": rnd})
        delivered.append(reply.get("delivered_count", 0))
        for entry in agent.receive_n(workers, lambda b, r=rnd: is_type("ack")(b) and b["round"] == r, 10):
            acks.setdefault(entry["from_name"], []).append(rnd)
        round_us.append((time.perf_counter_ns() - t0) / 1000)
    agent.client.broadcast({"type": "stop"})
    return {
        "workers": workers,
        "rounds": rounds,
        "delivered_counts": sorted(set(delivered)),
        "acks_per_worker": {name: len(rs) for name, rs in sorted(acks.items())},
        "all_rounds_acked": all(rs == list(range(rounds)) for rs in acks.values()) and len(acks) == workers,
        "round_us": percentiles(round_us),
        "deliveries": sum(delivered),
    }


run(main)
