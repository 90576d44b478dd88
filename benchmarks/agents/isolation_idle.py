"""Idle agent: first syscall a NOOP naming itself, then STORE `isolation/ready/<name>`, then it waits on
its connection doing nothing until the kernel closes it (KILL, or kernel shutdown)."""

import os
import sys

from clove_sdk import CloveClient

name = os.environ.get("CLOVE_AGENT_NAME", "")
client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else None)
if not client.connect() or client.noop(f"first:{name}") is None:
    sys.exit(10)
if not client.store(f"isolation/ready/{name}", 1).get("success"):
    sys.exit(11)
client.recv()  # blocks: the kernel never sends unasked, so this returns only at EOF
