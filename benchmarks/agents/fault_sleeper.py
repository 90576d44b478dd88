"""Fault drill: a child that only sleeps; it must not outlive its task."""

import time

from suite_helpers import Agent

agent = Agent()
while True:
    time.sleep(1)
