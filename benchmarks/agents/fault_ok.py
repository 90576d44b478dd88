"""Fault drill: a task that succeeds, placed after the failing ones to show the suite carries on."""

from suite_helpers import Agent, run


def main(agent: Agent) -> dict:
    return {"echo": agent.client.echo("still alive")}


run(main)
