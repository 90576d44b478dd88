"""Fault drill: spawns a sleeping child, then dies with os._exit(3) before reporting."""

import os

from suite_helpers import Agent

agent = Agent()
agent.spawn("sleeper", "fault_sleeper.py")
os._exit(3)
