"""Fault drill: spawns a sleeping child, then never reports (the runner must time it out and kill both)."""

import time

from suite_helpers import Agent

agent = Agent()
agent.spawn("sleeper", "fault_sleeper.py")
while True:
    time.sleep(1)
