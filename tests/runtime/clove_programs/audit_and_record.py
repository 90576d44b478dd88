"""Audit log and execution recording from a Clove SDK program."""

import json
import os
import sys
import time

from clove_sdk import CloveClient

worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pong_worker.py")

with CloveClient() as client:
    config = client.set_audit_config(log_lifecycle=True, log_security=True)
    spawned = client.spawn(name="audited", script=worker, sandboxed=False)
    if not spawned:
        sys.exit(1)
    killed = client.kill(name="audited")
    log = client.get_audit_log(category="AGENT_LIFECYCLE", limit=50)
    lifecycle = [(e["event_type"], e.get("agent_name")) for e in log["entries"]]

    client.start_recording()
    client.store("rec:a", 1)
    client.fetch("rec:a")
    stopped = client.stop_recording()
    status = client.get_recording_status(export=True)
    replay = client.start_replay(status["recording"])
    replay_status = client.get_replay_status()
    deadline = time.time() + 10
    while replay_status["state"] == "running" and time.time() < deadline:
        time.sleep(0.05)
        replay_status = client.get_replay_status()
    print(
        json.dumps(
            {
                "config_ok": config["success"],
                "killed": killed,
                "lifecycle": lifecycle,
                "recorded": stopped.get("entry_count", stopped.get("entries_recorded")),
                "state": status["state"],
                "recorded_ops": [e["opcode_name"] for e in json.loads(status["recording"])],
                "replay": replay["success"],
                "replay_state": replay_status["state"],
            }
        )
    )
