"""Reports which id the kernel stamped on its connection. Right after connecting (before any frame) it
creates `$ISOLATION_WHOAMI_DIR/<name>.<incarnation>`; after its first reply it STOREs
`isolation/whoami/<name>/<incarnation>` = that id. The first incarnation then exits with status 3 (a
failure, so on-failure restarts it); later ones wait until the kernel closes the connection."""

import os
import sys

from clove_sdk import CloveClient

name = os.environ.get("CLOVE_AGENT_NAME", "")
marker_dir = os.environ.get("ISOLATION_WHOAMI_DIR", "")
if not os.path.isdir(marker_dir):
    sys.exit(11)
inc = sum(1 for f in os.listdir(marker_dir) if f.startswith(f"{name}."))
client = CloveClient(sys.argv[1] if len(sys.argv) > 1 else None)
if not client.connect():
    sys.exit(10)
open(os.path.join(marker_dir, f"{name}.{inc}"), "w").close()
client.store(f"isolation/whoami/{name}/{inc}", client.noop("hello") and client.agent_id)
if inc == 0:
    os._exit(3)
client.recv()
