"""A second agent that reads keys its parent stored and reports what it could see (None = not visible)."""

from suite_helpers import Agent, run


def main(agent: Agent) -> None:
    keys = {}
    for key in agent.params["keys"]:
        got = agent.client.fetch(key)
        keys[key] = got.get("value") if got.get("exists") else None
    agent.tell_parent({"type": "seen", "keys": keys})


run(main)
