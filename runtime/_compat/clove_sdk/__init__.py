"""clove-gym's own implementation of the published Clove Python SDK's public API (`clove_sdk`).

Programs written against the Clove SDK import this package unmodified when the real one is not
installed: the kernel appends `runtime/_compat` to a spawned agent's PYTHONPATH, so an installed
`clove_sdk` still wins. Standard library only, so it imports in any interpreter an agent runs.
"""

from clove_sdk.client import (
    DEFAULT_SOCKET_PATH,
    HEADER_SIZE,
    MAGIC_BYTES,
    MAX_PAYLOAD_SIZE,
    AgentOSClient,
    CloveClient,
    Message,
    SyscallOp,
    connect,
)

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "HEADER_SIZE",
    "MAGIC_BYTES",
    "MAX_PAYLOAD_SIZE",
    "AgentOSClient",
    "CloveClient",
    "Message",
    "SyscallOp",
    "connect",
]
