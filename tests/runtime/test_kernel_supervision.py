"""Restart policies through the kernel: on-failure restarts keep the agent's id, then escalate."""

from __future__ import annotations

import textwrap
import time

from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import Op

CRASHER = textwrap.dedent("""
    import os
    from clove_sdk import CloveClient
    c = CloveClient()
    c.connect()
    n = c.fetch("runs")["value"] or 0
    c.store("runs", n + 1)
    c.store("ids", (c.fetch("ids")["value"] or []) + [c.agent_id])
    os._exit(3)
""")


def _events(c, want: int, timeout: float = 20.0) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += c.call(Op.POLL_EVENTS, {"max": 50})["events"]
        time.sleep(0.05)
    return got


def test_on_failure_restarts_with_same_id_then_escalates(tmp_path, agent_dir, raw_client):
    script = agent_dir / "crasher.py"
    script.write_text(CRASHER)
    script.chmod(0o644)
    with Kernel(str(tmp_path / "k.sock")) as k:
        c = raw_client(k.socket_path)
        c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_RESTARTING", "AGENT_ESCALATED"]})
        spawned = c.call(
            Op.SPAWN,
            {
                "name": "crasher",
                "script": str(script),
                "restart_policy": "on-failure",
                "max_restarts": 2,
                "restart_window": 60,
            },
        )
        events = _events(c, 3)
        types = [e["type"] for e in events]
        assert types == ["AGENT_RESTARTING", "AGENT_RESTARTING", "AGENT_ESCALATED"], events
        assert [e["data"]["restart_count"] for e in events[:2]] == [1, 2]
        assert all(e["data"]["exit_code"] == 3 for e in events)
        assert events[1]["data"]["delay_ms"] > events[0]["data"]["delay_ms"]  # exponential backoff
        assert c.call(Op.FETCH, {"key": "runs"})["value"] == 3
        assert c.call(Op.FETCH, {"key": "ids"})["value"] == [spawned["id"]] * 3  # one id across restarts
        time.sleep(0.3)
        assert c.call(Op.LIST, b"") == []  # escalated: gone, no restart loop
        c.close()


def test_clean_exit_is_not_restarted_under_on_failure_and_kill_cancels_backoff(
    tmp_path, agent_dir, raw_client
):
    ok = agent_dir / "ok.py"
    ok.write_text("import sys; sys.exit(0)\n")
    bad = agent_dir / "bad.py"
    bad.write_text("import sys; sys.exit(1)\n")
    ok.chmod(0o644)
    bad.chmod(0o644)
    with Kernel(str(tmp_path / "k.sock")) as k:
        c = raw_client(k.socket_path)
        c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED", "AGENT_RESTARTING"]})
        c.call(Op.SPAWN, {"name": "ok", "script": str(ok), "restart_policy": "on-failure"})
        exited = _events(c, 1)
        assert [e["type"] for e in exited] == ["AGENT_EXITED"] and exited[0]["data"]["exit_code"] == 0
        time.sleep(0.3)
        assert c.call(Op.POLL_EVENTS, {})["count"] == 0
        c.call(
            Op.SPAWN, {"name": "bad", "script": str(bad), "restart_policy": "always", "backoff_initial": 0.5}
        )
        assert [e["type"] for e in _events(c, 2)] == ["AGENT_EXITED", "AGENT_RESTARTING"]
        assert c.call(Op.LIST, b"")[0]["state"] == "RESTARTING"
        assert c.call(Op.KILL, {"name": "bad"})["killed"] is True  # cancels the pending restart
        time.sleep(1.5)
        assert c.call(Op.LIST, b"") == []
        assert (
            c.call(Op.SPAWN, {"script": str(ok), "restart_policy": "sometimes"})["restart_policy"] == "never"
        )
        c.close()


def test_a_restart_wakes_the_loop_at_its_deadline_not_at_the_next_tick(tmp_path, agent_dir, raw_client):
    """The loop's poll timeout ends at the next restart's deadline, so a backoff of d seconds restarts
    after d, not after up to d + TICK_S. Checked through what the loop asks of its selector (the end of
    each wait, shorter than a tick), which does not depend on how noisy the machine is."""
    from clove_gym.runtime.kernel import TICK_S

    script = agent_dir / "crasher.py"
    script.write_text(CRASHER)
    script.chmod(0o644)
    with Kernel(str(tmp_path / "k.sock")) as k:
        waits: list[tuple[float, float]] = []  # (when the wait ends, its timeout)
        deadlines: list[float] = []
        select, due = k._sel.select, k.supervisor.due

        def recording_select(timeout=None):
            waits.append((time.monotonic() + timeout, timeout))
            return select(timeout)

        def recording_due(now):
            at = k.supervisor.next_deadline()
            fired = due(now)
            if fired:
                deadlines.append(at)
            return fired

        k._sel.select, k.supervisor.due = recording_select, recording_due
        c = raw_client(k.socket_path)
        c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_RESTARTING", "AGENT_ESCALATED"]})
        body = {"name": "crasher", "script": str(script), "restart_policy": "on-failure", "max_restarts": 1}
        c.call(Op.SPAWN, body)
        events = _events(c, 2)
        assert [e["type"] for e in events] == ["AGENT_RESTARTING", "AGENT_ESCALATED"], events
        assert len(deadlines) == 1
        near = [(end, timeout) for end, timeout in list(waits) if abs(end - deadlines[0]) < TICK_S]
        assert any(abs(end - deadlines[0]) < 0.002 and timeout < TICK_S for end, timeout in near), (
            deadlines,
            near,
        )
        c.close()
