"""IPC ping-pong with a spawned worker, written as a Clove SDK user would.

The worker is spawned with the SDK defaults (sandboxed); `--plain` asks for a plain process.
"""

import json
import os
import sys
import time

from clove_sdk import CloveClient

worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pong_worker.py")

with CloveClient() as client:
    client.register_name("pinger")
    spawned = client.spawn(name="ponger-proc", script=worker, sandboxed="--plain" not in sys.argv)
    if not spawned or spawned.get("status") != "running":
        print(json.dumps({"error": "spawn failed", "reply": spawned}))
        sys.exit(1)

    # wait until the worker has registered its name (SEND by name fails until then)
    deadline = time.time() + 15
    while not client.send_message({"type": "hello"}, to_name="ponger").get("success"):
        if time.time() > deadline:
            print(json.dumps({"error": "worker never registered"}))
            sys.exit(1)
        time.sleep(0.05)

    pongs = []
    for n in range(5):
        client.send_message({"type": "ping", "n": n}, to_name="ponger")
        while True:
            messages = client.recv_messages(max_messages=1)["messages"]
            if messages:
                pongs.append(messages[0])
                break
            if time.time() > deadline:
                print(json.dumps({"error": "no pong", "got": pongs}))
                sys.exit(1)
            time.sleep(0.01)

    names = [a["name"] for a in client.list_agents()]
    client.send_message({"type": "stop"}, to_name="ponger")
    print(
        json.dumps(
            {
                "spawned_id": spawned["id"],
                "pongs": [p["message"]["n"] for p in pongs],
                "pong_from": sorted({p["from_name"] for p in pongs}),
                "pong_agent_ids": sorted({p["message"]["by"] for p in pongs}),
                "listed": names,
                "isolation": spawned["isolation"],
            }
        )
    )
