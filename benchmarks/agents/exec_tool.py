"""EXEC as a tool call: synchronous with output and exit codes, asynchronous through ASYNC_POLL, and a
blocked command refused by the kernel's permissions."""

import json
import time

from suite_helpers import Agent, AgentError, percentiles, run


def main(agent: Agent) -> dict:
    c = agent.client
    sync_us = []
    outputs = []
    for n in range(int(agent.params.get("calls", 5))):
        t0 = time.perf_counter_ns()
        r = c.exec(f"echo clove-$(({n} * 7))", timeout=10)
        sync_us.append((time.perf_counter_ns() - t0) / 1000)
        outputs.append(r.get("stdout", "").strip() == f"clove-{n * 7}" and r.get("exit_code") == 0)
    failing = c.exec("exit 7", timeout=10)
    accepted = c.exec("echo async-done", timeout=10, async_=True, request_id=4242)
    result = None
    end = time.monotonic() + 20
    while result is None:
        for entry in c.poll_async().get("results", []):
            if entry.get("request_id") == 4242:
                result = entry
        if result is None:
            if time.monotonic() > end:
                raise AgentError("async EXEC result never arrived")
            time.sleep(0.01)
    payload = json.loads(result["payload"])
    blocked = c.exec("sudo true", timeout=5)
    return {
        "sync_outputs_ok": all(outputs),
        "sync_calls": len(outputs),
        "failing_exit_code": failing.get("exit_code"),
        "failing_success": failing.get("success"),
        "async_accepted": accepted.get("status") == "accepted",
        "async_stdout": payload.get("stdout", "").strip(),
        "blocked_refused": blocked.get("success") is False and "denied" in blocked.get("error", "").lower(),
        "exec_us": percentiles(sync_us),
    }


run(main)
