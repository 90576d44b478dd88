"""A worker agent written against the Clove SDK: answers pings until told to stop.

Spawned by pingpong.py; connects back through the socket path the kernel passes as argv[1].
"""

import sys
import time

from clove_sdk import CloveClient

client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else "/tmp/clove.sock")
if not client.connect():
    sys.exit(1)
client.register_name("ponger")

deadline = time.time() + 20
while time.time() < deadline:
    inbox = client.recv_messages()
    for msg in inbox.get("messages", []):
        body = msg["message"]
        if body.get("type") == "stop":
            client.disconnect()
            sys.exit(0)
        if body.get("type") == "ping":
            client.send_message({"type": "pong", "n": body["n"], "by": client.agent_id}, to=msg["from_id"])
    time.sleep(0.01)
sys.exit(2)
