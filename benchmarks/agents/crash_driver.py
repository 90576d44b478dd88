"""Crash tolerance: workers count steps in the state store; one dies with os._exit(3) and one is killed
by SIGKILL midway. The others must finish, and the exits must be seen through AGENT_EXITED events."""

from suite_helpers import Agent, run


def main(agent: Agent) -> dict:
    steps = int(agent.params["steps"])
    crash_at = int(agent.params["crash_at"])
    fates = agent.params["fates"]  # worker suffix -> "finish" | "exit3" | "sigkill"
    agent.client.subscribe(["AGENT_EXITED"])
    ids = {}
    for suffix, fate in fates.items():
        ids[agent.spawn(suffix, "crash_worker.py", steps=steps, crash_at=crash_at, fate=fate)["id"]] = suffix

    def all_exited(events: list[dict]) -> bool:
        return ids.keys() <= {e["data"].get("agent_id") for e in events if e["type"] == "AGENT_EXITED"}

    events = agent.events(all_exited, timeout_s=60)
    exit_codes = {
        ids[e["data"]["agent_id"]]: e["data"]["exit_code"] for e in events if e["data"].get("agent_id") in ids
    }
    progress = {}
    for suffix in fates:
        got = agent.client.fetch(f"suite/{agent.name}.{suffix}/progress")
        progress[suffix] = got.get("value") if got.get("exists") else None
    return {
        "steps": steps,
        "crash_at": crash_at,
        "fates": fates,
        "exit_codes": exit_codes,
        "progress": progress,
    }


run(main)
