"""Fan-out worker: acknowledges every broadcast round to its parent until told to stop."""

from suite_helpers import Agent, is_type, run


def main(agent: Agent) -> None:
    agent.tell_parent({"type": "ready"})
    while True:
        body = agent.receive(lambda b: is_type("work")(b) or is_type("stop")(b), spin=True)["message"]
        if body["type"] == "stop":
            return
        agent.tell_parent({"type": "ack", "round": body["round"]})


run(main)
