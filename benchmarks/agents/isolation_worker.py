"""Crash-isolation worker: steady work with its progress in the kernel's state store.

Every `step_s` (from `isolation/crash/params`) it increments its counter and STOREs
`isolation/progress/<name>` = {"n", "inc", "id"}: the counter, its incarnation (0 for the first start) and
the id the kernel stamps on its connection. A restarted incarnation FETCHes its last stored value and
continues from it, so a crash loses at most the step in flight. It stops when the kernel goes away.
"""

import os
import sys
import time

from clove_sdk import CloveClient

EXIT_NO_KERNEL = 10
EXIT_NO_PARAMS = 11

name = os.environ.get("CLOVE_AGENT_NAME", "")
client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else None)
if not client.connect():
    sys.exit(EXIT_NO_KERNEL)
params = client.fetch("isolation/crash/params")
if not params.get("exists"):
    print(f"{name}: no isolation/crash/params in the store: {params}", file=sys.stderr)
    sys.exit(EXIT_NO_PARAMS)
step_s = float(params["value"]["step_s"])
key = f"isolation/progress/{name}"
last = client.fetch(key)
n, inc = (last["value"]["n"], last["value"]["inc"] + 1) if last.get("exists") else (0, 0)
while True:
    n += 1
    if not client.store(key, {"n": n, "inc": inc, "id": client.agent_id}).get("success"):
        sys.exit(0)  # the kernel closed the connection: the run is over
    time.sleep(step_s)
