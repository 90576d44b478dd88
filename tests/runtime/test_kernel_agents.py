"""SPAWN / LIST / PAUSE / RESUME / KILL with real child processes written against the Clove SDK API."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time

import psutil
import pytest
from clove_gym.runtime import syscalls
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import Op

WORKER = textwrap.dedent("""
    import os, sys, time
    from clove_sdk import CloveClient
    client = CloveClient()
    assert client.connect(), "cannot connect"
    client.register_name(os.environ["CLOVE_AGENT_NAME"])
    client.store("pid:" + os.environ["CLOVE_AGENT_NAME"], {"pid": os.getpid(), "argv1": sys.argv[1],
                 "id": client.agent_id}, "global")
    mode = os.environ.get("WORKER_MODE", "")
    while True:
        msgs = client.recv_messages(10)["messages"]
        for m in msgs:
            if m["message"] == "crash":
                os._exit(3)
            if m["message"] == "quit":
                sys.exit(0)
            client.send_message({"echo": m["message"]}, to=m["from"])
        time.sleep(0.01)
""")


@pytest.fixture
def worker(agent_dir):
    path = agent_dir / "worker.py"
    path.write_text(WORKER)
    path.chmod(0o644)
    return str(path)


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _registered(c, key):
    r = c.call(Op.FETCH, {"key": key})
    return r["value"] if r["exists"] else None


def test_spawn_identity_ipc_pause_resume_kill(connect, kernel, worker):
    c = connect()
    c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_SPAWNED", "AGENT_EXITED", "AGENT_PAUSED", "AGENT_RESUMED"]})
    spawned = c.call(Op.SPAWN, {"name": "w1", "script": worker, "sandboxed": False})
    assert spawned["success"] and spawned["status"] == "running" and spawned["name"] == "w1"
    assert set(spawned) >= {"id", "name", "pid", "status", "restart_policy", "isolation"}  # C7
    info = _wait(lambda: _registered(c, "pid:w1"))
    assert info["id"] == spawned["id"]  # C13: the child's connection has the SPAWN id
    assert info["pid"] == spawned["pid"] and info["argv1"] == kernel.socket_path  # C5
    assert c.call(Op.SPAWN, {"name": "w1", "script": worker})["success"] is False  # names are unique
    assert c.call(Op.LIST, b"") == [
        {
            "id": spawned["id"],
            "name": "w1",
            "pid": spawned["pid"],
            "state": "RUNNING",
            "running": True,
            "restarts": 0,
            "limits_mechanism": "none",
        }
    ]
    c.call(Op.SEND, {"to": spawned["id"], "message": "ping"})
    reply = _wait(lambda: c.call(Op.RECV, {})["messages"])
    assert reply[0]["message"] == {"echo": "ping"} and reply[0]["from"] == spawned["id"]
    assert c.call(Op.PAUSE, {"name": "w1"}) == {"success": True, "paused": True, "agent_id": spawned["id"]}
    _wait(lambda: psutil.Process(spawned["pid"]).status() == psutil.STATUS_STOPPED)
    assert c.call(Op.PAUSE, {"name": "w1"})["success"] is False
    assert c.call(Op.RESUME, {"id": spawned["id"]})["resumed"] is True
    c.call(Op.PAUSE, {"name": "w1"})
    killed = c.call(Op.KILL, {"name": "w1"})  # a paused agent is killed too
    assert killed["killed"] is True and killed["agent_id"] == spawned["id"]
    assert (
        not psutil.pid_exists(spawned["pid"])
        or psutil.Process(spawned["pid"]).status() == psutil.STATUS_ZOMBIE
    )
    assert c.call(Op.LIST, b"") == []
    types = [e["type"] for e in c.call(Op.POLL_EVENTS, {})["events"]]
    assert types == ["AGENT_SPAWNED", "AGENT_PAUSED", "AGENT_RESUMED", "AGENT_PAUSED", "AGENT_EXITED"]
    assert c.call(Op.KILL, {"name": "w1"})["killed"] is False


def test_agent_crash_is_reported_with_exit_code(connect, worker):
    c = connect()
    c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED"]})
    spawned = c.call(Op.SPAWN, {"name": "crashy", "script": worker})
    _wait(lambda: _registered(c, "pid:crashy"))
    c.call(Op.SEND, {"to_name": "crashy", "message": "crash"})
    event = _wait(lambda: c.call(Op.POLL_EVENTS, {})["events"])[0]
    assert event["data"] == {"agent_id": spawned["id"], "name": "crashy", "exit_code": 3, "reason": "failed"}
    assert c.call(Op.LIST, b"") == []


def test_spawn_bad_requests(connect):
    c = connect()
    assert c.call(Op.SPAWN, {"name": "x"}) == {"success": False, "error": "script path required"}
    assert "must be" in c.call(Op.SPAWN, {"script": "a.py", "limits": 5})["error"]
    assert c.call(Op.SPAWN, b"{oops")["success"] is False
    assert c.call(Op.KILL, {"id": 12345}) == {
        "killed": False,
        "agent_id": 12345,
        "success": False,
        "error": "agent not found",
    }


def test_stop_kills_every_agent(tmp_path, worker, raw_client):
    k = Kernel(str(tmp_path / "k.sock")).start()
    c = raw_client(k.socket_path)
    pids = [c.call(Op.SPAWN, {"name": f"s{i}", "script": worker})["pid"] for i in range(3)]
    for i in range(3):
        _wait(lambda i=i: _registered(c, f"pid:s{i}"))
    c.close()
    k.stop()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(k.socket_path)


def test_a_kill_that_raises_loses_no_agent(tmp_path, worker, raw_client, monkeypatch):
    """A KILL whose signalling or waiting raises answers with the error, and the agent is not left
    behind in STOPPING: it goes back under watch, so a later KILL works and its exit is still noticed,
    without a restart (it was asked to end)."""

    def broken_once(proc, name: str) -> None:
        real = getattr(proc, name)

        def fail(*args):
            setattr(proc, name, real)
            raise OSError(19, f"injected failure in {name}")

        setattr(proc, name, fail)

    monkeypatch.setattr(syscalls, "KILL_GRACE_S", 0.3)  # b's kill() runs when the grace period ends
    with Kernel(str(tmp_path / "k.sock")) as k:
        c = raw_client(k.socket_path)
        c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED", "AGENT_RESTARTING"]})
        policy = {"script": worker, "sandboxed": False, "restart_policy": "always", "backoff_initial": 0.1}
        a = c.call(Op.SPAWN, {"name": "a", **policy})
        b = c.call(Op.SPAWN, {"name": "b", **policy})
        for name in ("a", "b"):
            _wait(lambda name=name: _registered(c, f"pid:{name}"))
        # SIGTERM could not be sent: the agent runs on, as before, and a second KILL ends it
        broken_once(k.agents[a["id"]].proc, "terminate")
        failed = c.call(Op.KILL, {"name": "a"})
        assert failed["success"] is False and failed["killed"] is False
        assert "injected failure in terminate" in failed["error"] and "still watched" in failed["error"]
        assert [x["state"] for x in c.call(Op.LIST, b"") if x["name"] == "a"] == ["RUNNING"]
        assert psutil.Process(a["pid"]).status() != psutil.STATUS_ZOMBIE
        assert c.call(Op.KILL, {"name": "a"})["killed"] is True
        # the wait raised before a signal went out: the agent runs on, watched; when it ends by itself its
        # exit is reported, and it is not restarted although its policy is "always"
        proc = k.agents[b["id"]].proc
        proc.terminate = lambda: None
        broken_once(proc, "kill")
        failed = c.call(Op.KILL, {"name": "b"})
        assert failed["success"] is False and "injected failure in kill" in failed["error"]
        assert [x["state"] for x in c.call(Op.LIST, b"") if x["name"] == "b"] == ["RUNNING"]
        c.call(Op.SEND, {"to_name": "b", "message": "quit"})
        events: list = []
        _wait(lambda: events.extend(c.call(Op.POLL_EVENTS, {})["events"]) or len(events) >= 2)
        assert [(e["type"], e["data"]["name"], e["data"]["exit_code"]) for e in events] == [
            ("AGENT_EXITED", "a", 128 + signal.SIGTERM),
            ("AGENT_EXITED", "b", 0),
        ]
        _wait(lambda: c.call(Op.LIST, b"") == [])
        time.sleep(0.3)  # a restart would be announced at once and come after ~0.1 s of backoff
        assert c.call(Op.POLL_EVENTS, {})["events"] == [] and c.call(Op.LIST, b"") == []
        assert not psutil.pid_exists(b["pid"])
        c.close()


def test_an_exit_whose_poll_and_wait_raise_is_still_reported(tmp_path, worker, raw_client, capfd):
    """The loop's exit handler must not lose an agent when noticing its exit raises: the poll's failure
    is reported and the release waited for on a worker; a failing wait is retried a second later."""
    with Kernel(str(tmp_path / "k.sock")) as k:
        c = raw_client(k.socket_path)
        c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED"]})
        a = c.call(Op.SPAWN, {"name": "a", "script": worker, "sandboxed": False})
        _wait(lambda: _registered(c, "pid:a"))
        proc = k.agents[a["id"]].proc
        for name in ("poll", "wait"):
            real = getattr(proc, name)

            def fail(*args, name=name, real=real):
                setattr(proc, name, real)
                raise OSError(5, f"injected failure in {name}")

            setattr(proc, name, fail)
        c.call(Op.SEND, {"to_name": "a", "message": "quit"})
        events = _wait(lambda: c.call(Op.POLL_EVENTS, {})["events"], timeout=10.0)
        assert [(e["type"], e["data"]["exit_code"]) for e in events] == [("AGENT_EXITED", 0)]
        assert c.call(Op.LIST, b"") == [] and k.stats["internal_errors"] == 2
        c.close()
    err = capfd.readouterr().err
    assert "injected failure in poll" in err and "injected failure in wait" in err


@pytest.mark.parametrize("sandboxed", [False, True])
def test_spawn_log_captures_agent_output(connect, agent_dir, sandboxed):
    script = agent_dir / "talk.py"
    script.write_text("import sys\nprint('to stdout', flush=True)\nprint('to stderr', file=sys.stderr)\n")
    script.chmod(0o644)
    log = agent_dir / "talk.log"
    c = connect()
    c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED"]})
    assert c.call(Op.SPAWN, {"script": str(script), "log": str(log), "sandboxed": sandboxed})["success"]
    _wait(lambda: c.call(Op.POLL_EVENTS, {})["events"])
    assert log.read_text().splitlines() == ["to stdout", "to stderr"]
    bad = c.call(Op.SPAWN, {"script": str(script), "log": "/nonexistent-dir/x.log", "sandboxed": sandboxed})
    assert bad["success"] is False and "cannot open log" in bad["error"]


def test_spawn_grants_rights_on_top_of_a_level(connect, agent_dir):
    script = agent_dir / "rights.py"
    script.write_text(
        "from clove_sdk import CloveClient\n"
        "c = CloveClient(); c.connect()\n"
        "c.store('rights', c.get_permissions()['permissions'])\n"
    )
    script.chmod(0o644)
    c = connect()
    spawned = c.call(
        Op.SPAWN,
        {"script": str(script), "sandboxed": False, "level": "readonly", "permissions": {"can_spawn": True}},
    )
    assert spawned["success"], spawned
    rights = _wait(lambda: _registered(c, "rights"))
    assert rights["can_spawn"] is True and rights["can_write"] is False and rights["can_exec"] is False
    assert "/etc/shadow" in rights["filesystem"]["blocked"]  # the level's block list is kept
    bad = c.call(Op.SPAWN, {"script": str(script), "level": "godmode"})
    assert bad["success"] is False and "unknown level" in bad["error"]


@pytest.mark.parametrize("sandboxed", [False, True])
def test_every_agent_gets_its_spawn_id_even_when_it_connects_at_once(connect, agent_dir, sandboxed):
    script = agent_dir / "whoami.py"
    script.write_text(
        "import os\nfrom clove_sdk import CloveClient\nc = CloveClient(); c.connect(); c.echo('x')\n"
        "c.store('id:' + os.environ['CLOVE_AGENT_NAME'], c.agent_id)\n"
    )
    script.chmod(0o644)
    c = connect()
    for i in range(8):  # pipelined: the spawns overlap with the agents' first connections
        c.send(Op.SPAWN, {"name": f"who{i}", "script": str(script), "sandboxed": sandboxed})
    ids = [json.loads(c.recv_frame()[2])["id"] for _ in range(8)]
    for i, spawn_id in enumerate(ids):
        assert _wait(lambda i=i: _registered(c, f"id:who{i}")) == spawn_id


def test_a_sandboxed_agent_is_served_with_its_rights_before_its_spawn_is_answered(
    connect, kernel, agent_dir, monkeypatch
):
    """The zygote names the agent's init before the agent runs, so the kernel serves the agent's first
    calls at once (not after the SPAWN reply), and already with the rights SPAWN granted it."""
    script = agent_dir / "early.py"
    script.write_text(
        "import json\nfrom clove_sdk import CloveClient\n"
        "c = CloveClient(); c.connect(); c.echo('x')\n"
        "print(json.dumps({'id': c.agent_id, 'rights': c.get_permissions()['permissions']}), flush=True)\n"
    )
    script.chmod(0o644)
    log = agent_dir / "early.log"
    launcher = kernel.sandbox()
    real_spawn = launcher.spawn
    served_before_reply: list[bool] = []

    def spawn_then_wait(spec, on_start=None):
        proc = real_spawn(spec, on_start)
        deadline = time.monotonic() + 15.0  # the reply is held until the agent was served (or never)
        while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.01)
        served_before_reply.append(bool(log.exists() and log.read_text().strip()))
        return proc

    monkeypatch.setattr(launcher, "spawn", spawn_then_wait)
    c = connect()
    reply = c.call(Op.SPAWN, {"script": str(script), "log": str(log), "level": "readonly"})
    assert reply["success"], reply
    assert reply["isolation"]["warm_slot"] or reply["isolation"]["namespaces"]["pid"]
    assert served_before_reply == [True]
    seen = json.loads(log.read_text().splitlines()[0])
    assert seen["id"] == reply["id"]
    assert seen["rights"]["can_write"] is False and seen["rights"]["can_spawn"] is False


def _cgroup_dirs(rel: str) -> list[str]:
    from clove_gym.runtime.sandbox.cgroups import CGROUP_ROOT, V1_CONTROLLERS

    v1 = [os.path.join(CGROUP_ROOT, c, rel) for c in V1_CONTROLLERS]
    return [d for d in (*v1, os.path.join(CGROUP_ROOT, rel)) if rel and os.path.isdir(d)]


def test_sandboxed_kill_and_crash_are_reported_only_once_everything_is_released(connect, agent_dir):
    """KILL's reply and AGENT_EXITED of a crash both come after the agent's init is reaped (no zombie)
    and its cgroup removed, so a client that acts on them never sees leftovers."""
    script = agent_dir / "idle.py"
    script.write_text("import time\ntime.sleep(60)\n")
    c = connect()
    for round_ in range(3):
        r = c.call(Op.SPAWN, {"name": f"idle{round_}", "script": str(script), "sandboxed": True})
        assert r["success"], r
        rel = r["isolation"].get("cgroup_path", "")
        time.sleep(0.2)
        psutil.Process(r["pid"])  # running
        assert c.call(Op.KILL, {"id": r["id"]})["killed"]
        assert not os.path.exists(f"/proc/{r['pid']}"), "init still there (zombie?) when KILL was answered"
        assert _cgroup_dirs(rel) == []
    crasher = agent_dir / "crash.py"
    crasher.write_text("import os, time\ntime.sleep(0.3)\nos._exit(3)\n")
    c.call(Op.SUBSCRIBE, {"event_types": ["AGENT_EXITED"]})
    r = c.call(Op.SPAWN, {"name": "crasher", "script": str(crasher), "sandboxed": True})
    rel = r["isolation"].get("cgroup_path", "")
    event = _wait(lambda: next(iter(c.call(Op.POLL_EVENTS, {"max": 10}).get("events", [])), None))
    assert event["data"]["exit_code"] == 3
    assert not os.path.exists(f"/proc/{r['pid']}") and _cgroup_dirs(rel) == []


STUBBORN = textwrap.dedent("""
    import os, signal, time
    from clove_sdk import CloveClient
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    client = CloveClient()
    assert client.connect(), "cannot connect"
    client.store("ready:" + os.environ["CLOVE_AGENT_NAME"], 1, "global")
    time.sleep(60)
""")


def test_kill_waits_on_the_kernel_thread_and_a_worker_only_sigkills(
    tmp_path, agent_dir, raw_client, monkeypatch
):
    """A sandboxed agent that ends on SIGTERM is answered from the kernel thread once the zygote reports
    it released: no worker thread wakes for it (a wake-up fewer per kill), and the answer is sent from
    the loop's event at once, not through its wake-up pipe. One that ignores SIGTERM is
    SIGKILLed by a worker when the grace period ends, not before; a paused one at once."""
    grace = 1.5
    monkeypatch.setattr(syscalls, "KILL_GRACE_S", grace)
    (agent_dir / "stubborn.py").write_text(STUBBORN)
    with Kernel(str(tmp_path / "k.sock")) as k:
        submitted = []
        submit = k._submit
        monkeypatch.setattr(k, "_submit", lambda *args: (submitted.append(args), submit(*args))[1])
        woken = []  # answers handed to the loop through its wake-up pipe
        call_soon = k.call_soon
        monkeypatch.setattr(k, "call_soon", lambda fn: (woken.append(fn), call_soon(fn))[1])
        c = raw_client(k.socket_path)
        agents = {}
        for name in ("polite", "stubborn", "paused"):
            script = agent_dir / ("stubborn.py" if name == "stubborn" else "worker.py")
            if name != "stubborn":
                script.write_text(WORKER)
            agents[name] = c.call(Op.SPAWN, {"name": name, "script": str(script), "sandboxed": True})
            assert agents[name]["success"], agents[name]
        _wait(lambda: _registered(c, "pid:polite") and _registered(c, "pid:paused"))
        _wait(lambda: _registered(c, "ready:stubborn"))
        assert c.call(Op.PAUSE, {"name": "paused"})["paused"] is True
        took = {}
        for name in ("polite", "stubborn", "paused"):
            submitted.clear()
            woken.clear()
            t0 = time.monotonic()
            reply = c.call(Op.KILL, {"name": name})
            took[name] = (time.monotonic() - t0, len(submitted), len(woken))
            assert reply["killed"] is True, reply
            assert reply["exit_code"] == 128 + (signal.SIGTERM if name == "polite" else signal.SIGKILL), name
            assert not os.path.exists(f"/proc/{agents[name]['pid']}"), (
                f"{name}: init left when KILL was answered"
            )
        assert took["polite"][1] == 0, "a worker thread took part in a KILL that SIGTERM ended"
        assert took["polite"][2] == 0, "the loop woke itself to send an answer it had at hand"
        assert took["polite"][0] < grace
        assert took["stubborn"][1] == 1 and grace <= took["stubborn"][0] < grace + 2.0
        assert took["paused"][1] == 1 and took["paused"][0] < grace
        assert c.call(Op.LIST, b"") == [] and k.stats["internal_errors"] == 0


def test_rights_given_ahead_of_a_spawn_survive_a_reconnect_and_go_if_it_fails(tmp_path):
    """An agent named before its SPAWN is answered may close and reopen its connection meanwhile: it keeps
    the granted rights (not the default ones); a spawn that then fails takes them back."""
    from clove_gym.runtime.permissions import Permissions

    k = Kernel(socket_path=str(tmp_path / "k.sock"))
    readonly = Permissions.for_level("readonly")
    k.starting(4242, 7, readonly)
    assert k._spawned_owner(4242) == 7
    k.release(7)  # its first connection closed before the spawn was answered
    assert k.perms(7) is readonly
    k.start_ended(7)  # the spawn failed: no entry was registered
    assert k._spawned_owner(4242) is None
    assert k.perms(7) is not readonly and k.perms(7).can_write is True
