"""Counts steps into the state store; depending on its fate it finishes, calls os._exit(3), or SIGKILLs
itself at step `crash_at`."""

import os
import signal
import time

from suite_helpers import Agent

agent = Agent()
steps, crash_at, fate = int(agent.params["steps"]), int(agent.params["crash_at"]), agent.params["fate"]
key = f"suite/{agent.name}/progress"
for step in range(1, steps + 1):
    agent.client.store(key, step)
    if step == crash_at and fate == "exit3":
        os._exit(3)
    if step == crash_at and fate == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(agent.params.get("step_s", 0.01)))
agent.client.disconnect()
