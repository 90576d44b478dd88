"""IPC ping-pong: round trips to a spawned echo worker, timed here (RTT through the kernel's mailboxes)."""

import time

from suite_helpers import Agent, is_type, percentiles, run


def main(agent: Agent) -> dict:
    rounds = int(agent.params["rounds"])
    warmup = int(agent.params.get("warmup", 10))
    payload = "x" * int(agent.params.get("payload_bytes", 64))
    agent.spawn("pong", "pong_worker.py")
    agent.receive(is_type("ready"), timeout_s=20)
    worker = f"{agent.name}.pong"
    rtts_us, in_order, intact = [], True, True
    for seq in range(warmup + rounds):
        t0 = time.perf_counter_ns()
        agent.client.send_message({"type": "ping", "seq": seq, "data": payload}, to_name=worker)
        pong = agent.receive(is_type("pong"), timeout_s=10, spin=True)["message"]
        rtt = (time.perf_counter_ns() - t0) / 1000
        in_order &= pong["seq"] == seq
        intact &= pong["data"] == payload
        if seq >= warmup:
            rtts_us.append(rtt)
    agent.client.send_message({"type": "stop"}, to_name=worker)
    return {
        "rounds": len(rtts_us),
        "expected_rounds": rounds,
        "in_order": in_order,
        "payload_intact": intact,
        "rtt_us": percentiles(rtts_us),
    }


run(main)
