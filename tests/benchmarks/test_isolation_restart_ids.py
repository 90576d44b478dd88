"""Kernel race found by the crash-isolation benchmark (runtime/kernel.py `_on_accept`/`_spawned_owner`,
runtime/syscalls.py `_spawn` and `_restart`): an agent that connects before the kernel's loop has run the
spawn's completion (which puts the new pid in `self.agents` / `agent.proc`) is given a fresh connection id
instead of its spawn id. Restarted agents hit it most: the new incarnation connects within milliseconds,
while `agent.proc` still holds the dead pid. Expected to fail until the kernel registers the pid before
the agent can connect (or matches late)."""

from __future__ import annotations

from clove_gym.benchmarks import crash_isolation
from clove_gym.benchmarks.crash_isolation import Scenario


def test_every_connection_of_a_restarted_agent_carries_its_spawn_id() -> None:
    sc = Scenario(workers=9, victims=8, seed=3, calm_s=0.3, observe_s=0.3, modes=("agents",))
    (result,) = crash_isolation.run(sc).results
    assert result.victims_back == 8 and result.same_ids  # LIST keeps the ids...
    assert result.conn_id_changes == []  # ...but the connections must carry them too
