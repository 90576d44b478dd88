"""Events: a child's lifecycle (AGENT_SPAWNED, AGENT_EXITED with its exit code), a CUSTOM event it emits,
and STATE_CHANGED for a global store, all seen through SUBSCRIBE/POLL_EVENTS in the order they happened."""

from suite_helpers import Agent, run


def main(agent: Agent) -> dict:
    c = agent.client
    subscribed = c.subscribe(["AGENT_SPAWNED", "AGENT_EXITED", "CUSTOM", "STATE_CHANGED"])
    key = f"suite/{agent.name}/watched"
    c.store(key, 1)
    child = agent.spawn("child", "events_child.py", exit_code=int(agent.params.get("child_exit_code", 0)))

    def child_exited(events: list[dict]) -> bool:
        return any(e["type"] == "AGENT_EXITED" and e["data"].get("agent_id") == child["id"] for e in events)

    events = agent.events(child_exited, timeout_s=30)
    c.unsubscribe(["AGENT_SPAWNED", "AGENT_EXITED", "CUSTOM", "STATE_CHANGED"])

    def first(pred) -> int:
        return next((i for i, e in enumerate(events) if pred(e)), -1)

    spawned = first(lambda e: e["type"] == "AGENT_SPAWNED" and e["data"].get("agent_id") == child["id"])
    custom = first(lambda e: e["type"] == "CUSTOM" and e["source_agent_id"] == child["id"])
    exited = first(lambda e: e["type"] == "AGENT_EXITED" and e["data"].get("agent_id") == child["id"])
    changed = first(lambda e: e["type"] == "STATE_CHANGED" and (e["data"] or {}).get("key") == key)
    custom_data = events[custom]["data"] if custom >= 0 else None
    return {
        "subscribed": subscribed.get("success", False),
        "events_seen": [e["type"] for e in events],
        "spawned_seen": spawned >= 0,
        "spawned_parent": events[spawned]["data"].get("parent_id") if spawned >= 0 else None,
        "my_id": c.agent_id,
        "custom_seen": custom >= 0,
        "custom_data": custom_data,
        "exit_code_seen": events[exited]["data"].get("exit_code") if exited >= 0 else None,
        "expected_exit_code": int(agent.params.get("child_exit_code", 0)),
        "state_changed_seen": changed >= 0,
        "lifecycle_in_order": 0 <= spawned < custom < exited,
    }


run(main)
