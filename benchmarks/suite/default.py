"""The embedded default suite, `smoke`: scripted agents exercising the runtime end to end.

Each task is a real agent process spawned through the kernel (scripts in benchmarks/agents/), given its
parameters through the state store and reporting by message; the graders below judge those reports
together with what the runner saw itself (exit statuses from AGENT_EXITED events).
"""

from __future__ import annotations

from typing import Any

from clove_gym.benchmarks.suite.task import Grade, Outcome, Suite, Task, from_checks


def _pct(report: dict[str, Any], key: str, prefix: str) -> dict[str, float]:
    values = report.get(key) or {}
    return {f"{prefix}_{q}": values[q] for q in ("p50", "p99") if values.get(q) is not None}


def grade_pingpong(o: Outcome) -> Grade:
    r = o.report
    return from_checks(
        {
            "every ping answered": r.get("rounds") == r.get("expected_rounds"),
            "pongs in order": r.get("in_order") is True,
            "payload intact": r.get("payload_intact") is True,
            "RTT measured": bool((r.get("rtt_us") or {}).get("p50")),
            "worker exited cleanly": o.exits.get(f"{o.agent_names[0]}.pong") == 0,
        }
    )


def grade_fanout(o: Outcome) -> Grade:
    r = o.report
    workers, rounds = r.get("workers", 0), r.get("rounds", 0)
    acks = r.get("acks_per_worker") or {}
    return from_checks(
        {
            "every broadcast reached every worker": r.get("delivered_counts") == [workers],
            "every worker acked every round": r.get("all_rounds_acked") is True
            and sorted(acks.values()) == [rounds] * workers,
            "workers exited cleanly": all(o.exits.get(n) == 0 for n in o.agent_names[1:]),
        }
    )


def grade_state(o: Outcome) -> Grade:
    checks = o.report.get("checks") or {}
    return from_checks({name: ok is True for name, ok in checks.items()})


def grade_events(o: Outcome) -> Grade:
    r = o.report
    data = r.get("custom_data") or {}
    return from_checks(
        {
            "subscribed": r.get("subscribed") is True,
            "AGENT_SPAWNED for the child, with its parent": r.get("spawned_seen") is True
            and r.get("spawned_parent") == r.get("my_id"),
            "CUSTOM event with the child's data": r.get("custom_seen") is True
            and data.get("from") == f"{o.agent_names[0]}.child",
            "AGENT_EXITED with the child's exit code": r.get("exit_code_seen") == r.get("expected_exit_code"),
            "STATE_CHANGED for a global store": r.get("state_changed_seen") is True,
            "spawned < custom < exited": r.get("lifecycle_in_order") is True,
        }
    )


def grade_exec(o: Outcome) -> Grade:
    r = o.report
    return from_checks(
        {
            "sync EXEC output and exit code": r.get("sync_outputs_ok") is True,
            "failing command reports exit 7": r.get("failing_exit_code") == 7
            and r.get("failing_success") is False,
            "async EXEC accepted": r.get("async_accepted") is True,
            "async result through ASYNC_POLL": r.get("async_stdout") == "async-done",
            "blocked command refused": r.get("blocked_refused") is True,
        }
    )


def grade_think(o: Outcome) -> Grade:
    answers = o.report.get("answers") or []
    checks = {"every prompt answered": len(answers) == len(THINK_PROMPTS)}
    for n, a in enumerate(answers):
        checks[f"answer {n} succeeded"] = a.get("success") is True and bool(a.get("content"))
        checks[f"answer {n} counted tokens"] = (a.get("tokens") or 0) > 0
        if o.llm == "fake":  # the fake answers deterministically; a real model is only asked to answer
            checks[f"answer {n} is the fake's echo"] = a.get("content") == f"echo: {a.get('prompt')}"
    return from_checks(checks)


def grade_crash(o: Outcome) -> Grade:
    r = o.report
    fates, steps, crash_at = r.get("fates") or {}, r.get("steps"), r.get("crash_at")
    driver = o.agent_names[0]
    expected_exit = {"finish": 0, "exit3": 3, "sigkill": 137}
    expected_progress = {"finish": steps, "exit3": crash_at, "sigkill": crash_at}
    checks = {}
    for suffix, fate in fates.items():
        checks[f"{suffix} ({fate}) exit seen by the driver"] = (r.get("exit_codes") or {}).get(
            suffix
        ) == expected_exit[fate]
        checks[f"{suffix} ({fate}) exit seen by the runner"] = (
            o.exits.get(f"{driver}.{suffix}") == expected_exit[fate]
        )
        checks[f"{suffix} ({fate}) progress {expected_progress[fate]}"] = (r.get("progress") or {}).get(
            suffix
        ) == expected_progress[fate]
    return from_checks(checks)


THINK_PROMPTS = (
    "Name one prime number.",
    "Summarise: agents talk to a kernel over a Unix socket.",
    "Reply with the word ready.",
)

SMOKE = Suite(
    name="smoke",
    summary="scripted agents exercising IPC, broadcast, state store, events, EXEC, THINK and crash tolerance",
    tasks=(
        Task(
            "ipc_pingpong",
            "SEND/RECV round trips to a spawned echo worker (RTT measured in the agent)",
            "pingpong_driver.py",
            grade_pingpong,
            params={"rounds": 200, "warmup": 10, "payload_bytes": 64},
            metrics=lambda r: _pct(r, "rtt_us", "rtt_us"),
        ),
        Task(
            "broadcast_fanout",
            "BROADCAST rounds to 4 registered workers, each acknowledging every round",
            "fanout_driver.py",
            grade_fanout,
            params={"workers": 4, "rounds": 20},
            metrics=lambda r: _pct(r, "round_us", "round_us"),
        ),
        Task(
            "state_store",
            "global/agent/session scopes across agents, TTL expiry, prefix listing, delete",
            "state_driver.py",
            grade_state,
            params={"ttl_s": 1},
        ),
        Task(
            "events",
            "SUBSCRIBE/POLL_EVENTS: AGENT_SPAWNED, CUSTOM, AGENT_EXITED (exit code), STATE_CHANGED",
            "events_driver.py",
            grade_events,
            params={"child_exit_code": 5},
        ),
        Task(
            "exec_tool",
            "EXEC sync and async (ASYNC_POLL), exit codes, a blocked command refused",
            "exec_tool.py",
            grade_exec,
            params={"calls": 5},
            metrics=lambda r: _pct(r, "exec_us", "exec_us"),
        ),
        Task(
            "think",
            "THINK through google-genai (the local fake Gemini without an API key)",
            "think_agent.py",
            grade_think,
            params={"prompts": list(THINK_PROMPTS)},
            metrics=lambda r: _pct(r, "think_ms", "think_ms"),
        ),
        Task(
            "crash_tolerance",
            "workers count steps; one os._exit(3)s and one is SIGKILLed midway; the rest finish",
            "crash_driver.py",
            grade_crash,
            params={
                "steps": 30,
                "crash_at": 10,
                "fates": {"steady0": "finish", "steady1": "finish", "quitter": "exit3", "victim": "sigkill"},
            },
        ),
    ),
)
