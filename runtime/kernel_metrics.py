"""METRICS_* answers (spec §2.11): the kernel's agents and counters joined with runtime.metrics' readings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clove_gym.runtime import metrics
from clove_gym.runtime.hostcalls import field
from clove_gym.runtime.protocol import Op

if TYPE_CHECKING:
    from clove_gym.runtime.agents import ManagedAgent
    from clove_gym.runtime.kernel import Kernel


def _cgroup_of(agent: ManagedAgent) -> str | None:
    return getattr(agent.proc, "cgroup_path", None)


def _agent(k: Kernel, agent: ManagedAgent) -> dict[str, Any]:
    prev = k._metrics_state.get(("pid", agent.id))
    stats = k.dp.stats(agent.id)
    perms = k.perms(agent.id)
    kernel_stats = {
        "syscall_count": stats["syscalls"],
        "messages_sent": stats["messages_sent"],
        "messages_recv": stats["messages_recv"],
        "llm_calls": perms.calls_made,
        "llm_tokens_used": perms.tokens_used,
    }
    out, sample = metrics.agent_metrics(
        agent.id,
        agent.name,
        agent.proc.pid,
        agent.state,
        agent.created,
        agent.sandboxed,
        prev,
        _cgroup_of(agent),
        kernel_stats,
    )
    k._metrics_state[("pid", agent.id)] = sample
    out["limits_mechanism"] = agent.proc.isolation.get("mechanism", "none")
    return out


def answer(k: Kernel, aid: int, op: int, req: dict[str, Any]) -> dict[str, Any]:
    if op == Op.METRICS_SYSTEM:
        out, sample = metrics.system_metrics(k._metrics_state.get("cpu"))
        k._metrics_state["cpu"] = sample
        return {"success": True, "metrics": out}
    if op == Op.METRICS_ALL_AGENTS:
        agents = [_agent(k, a) for a in list(k.agents.values())]
        return {"success": True, "agents": agents, "count": len(agents)}
    if op == Op.METRICS_AGENT:
        target = field(req, "agent_id", int, aid)
        agent = k.agents.get(target)
        if agent is None:
            return {"success": False, "error": "Agent not found", "agent_id": target}
        return {"success": True, "metrics": _agent(k, agent)}
    path = field(req, "cgroup_path", str)
    if path is None:
        agent = k.agents.get(aid)
        path = _cgroup_of(agent) if agent is not None else None
        if path is None:
            path = f"clove/agent-{aid}"  # spec §2.11: a path that exists only for spawned agents
    return metrics.cgroup_metrics(path)
