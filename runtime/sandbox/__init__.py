"""Sandboxed agent processes: namespaces, cgroups (v2, v1) or rlimits, seccomp, a zygote fork server.

`Launcher.spawn(SpawnSpec)` returns an `AgentProcess` the kernel can select on (its pidfd), pause,
resume, kill as a whole tree and read cgroup metrics from; `isolation` says what was really applied.
"""

from .launcher import AgentProcess, Launcher
from .spec import Limits, SpawnError, SpawnSpec

__all__ = ["AgentProcess", "Launcher", "Limits", "SpawnError", "SpawnSpec"]
