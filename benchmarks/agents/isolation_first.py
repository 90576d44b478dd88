"""Spawn-latency agent: its first syscall is a NOOP carrying its name and the CLOCK_MONOTONIC time of its
first statement (the kernel's trace timestamps the frame's arrival), then it exits. Plain `clove_sdk`,
which the sandbox's zygote has already imported, as any user agent would."""

import time

started = time.monotonic_ns()

import os  # noqa: E402
import sys  # noqa: E402

from clove_sdk import CloveClient  # noqa: E402

client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else None)
name = os.environ.get("CLOVE_AGENT_NAME", "")
if not client.connect() or client.noop(f"first:{name}:{started}") is None:
    sys.exit(10)
client.disconnect()
