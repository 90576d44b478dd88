"""EXEC (sync and async), NOOP, HELLO, permissions and THINK from a Clove SDK program."""

import json
import time

from clove_sdk import CloveClient

with CloveClient() as client:
    out = {"echo": client.echo("ping"), "hello": client.hello()["protocol_version"]}
    ran = client.exec("echo from-exec")
    out["exec"] = [ran["success"], ran["stdout"].strip(), ran["exit_code"]]
    accepted = client.exec("echo later", async_=True)
    out["async_status"] = accepted.get("status")
    results = []
    deadline = time.time() + 10
    while not results and time.time() < deadline:
        results = client.poll_async()["results"]
        time.sleep(0.02)
    out["async_result"] = [json.loads(r["payload"])["stdout"].strip() for r in results]
    out["can_read"] = client.get_permissions()["permissions"]["can_read"]
    thought = client.think("What is 2+2?")
    out["think"] = {
        "success": thought["success"],
        "has_reason": bool(thought.get("error") or thought.get("content")),
    }
    print(json.dumps(out))
