"""Pub/sub from a Clove SDK program: subscribe, emit a custom event, see a state change."""

import json

from clove_sdk import CloveClient

with CloveClient() as client:
    sub = client.subscribe(["CUSTOM", "STATE_CHANGED"])
    client.emit_event("build_done", {"target": "docs"})
    client.store("events:last", 1)
    polled = client.poll_events(max_events=10)
    events = [(e["type"], e["data"]) for e in polled["events"]]
    client.unsubscribe(["CUSTOM"])
    client.emit_event("ignored", {})
    after = client.poll_events()["events"]
    print(
        json.dumps(
            {
                "subscribed": sub["subscribed"],
                "events": events,
                "count": polled["count"],
                "after_unsubscribe": [e["type"] for e in after],
            }
        )
    )
