"""Emits one CUSTOM event carrying its name, then exits with the code it was given."""

import sys

from suite_helpers import Agent

agent = Agent()
agent.client.emit_event("suite.hello", {"from": agent.name, "n": 1})
agent.client.disconnect()
sys.exit(int(agent.params.get("exit_code", 0)))
