"""Echo worker: answers every ping with a pong carrying the same sequence number and data."""

from suite_helpers import Agent, is_type, run


def main(agent: Agent) -> None:
    agent.tell_parent({"type": "ready"})
    while True:
        body = agent.receive(lambda b: is_type("ping")(b) or is_type("stop")(b), spin=True)["message"]
        if body["type"] == "stop":
            return
        agent.tell_parent({"type": "pong", "seq": body["seq"], "data": body["data"]})


run(main)
