"""The `clove_sdk` compatibility package: its API, standard-library-only import, and Clove SDK programs
running unmodified against our kernel (spec C1-C14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clove_gym.runtime.kernel import Kernel

COMPAT = Path(__file__).resolve().parents[2] / "runtime" / "_compat"
PROGRAMS = Path(__file__).resolve().parent / "clove_programs"
WORKER = str(PROGRAMS / "pong_worker.py")

if str(COMPAT) not in sys.path:
    sys.path.append(str(COMPAT))  # where the kernel puts it for its agents: at the end

import clove_sdk  # noqa: E402
from clove_sdk import CloveClient, Message, SyscallOp  # noqa: E402


@pytest.fixture(scope="module", params=["c-dataplane", "python-dataplane"])
def kernel(request):
    """The kernel with its C data plane and with the pure-Python twin: SDK programs must not tell them apart."""
    with Kernel(use_native=request.param == "c-dataplane") as k:
        if request.param == "c-dataplane" and not k.native:
            pytest.skip("the C extension is not built: only the Python data plane can run")
        yield k


@pytest.fixture
def sdk(kernel):
    with CloveClient(kernel.socket_path) as client:
        yield client


# ---- the package itself -------------------------------------------------------------------------------


def test_public_names():
    assert set(clove_sdk.__all__) >= {
        "CloveClient",
        "SyscallOp",
        "Message",
        "AgentOSClient",
        "connect",
        "MAGIC_BYTES",
        "HEADER_SIZE",
        "MAX_PAYLOAD_SIZE",
    }
    assert clove_sdk.AgentOSClient is CloveClient
    assert (clove_sdk.MAGIC_BYTES, clove_sdk.HEADER_SIZE, clove_sdk.MAX_PAYLOAD_SIZE) == (
        0x41474E54,
        17,
        1 << 20,
    )
    assert Path(clove_sdk.__file__).is_relative_to(COMPAT)


def test_message_bytes_match_the_spec_example():
    frame = Message(7, SyscallOp.SYS_HELLO, b"{}").serialize()
    assert frame.hex() == "544e4741" + "07000000" + "fe" + "0200000000000000" + "7b7d"
    assert Message.deserialize(frame) == Message(7, SyscallOp.SYS_HELLO, b"{}")
    assert Message.deserialize(frame[:-1]) is None  # incomplete
    assert Message.deserialize(b"XXXX" + frame[4:]) is None  # bad magic
    assert Message.deserialize(frame[:8] + b"\x13" + frame[9:]) is None  # opcode outside the table
    assert Message(1, SyscallOp.SYS_NOOP, "é".encode()).payload_str == "é"


def test_imports_with_the_standard_library_only():
    code = (
        "import sys; sys.path.append(sys.argv[1]); import clove_sdk, clove_sdk.client;"
        "extra = sorted(m.split('.')[0] for m in sys.modules"
        " if m.split('.')[0] not in sys.stdlib_module_names and m != '__main__' and not m.startswith('clove_sdk'));"
        "print(extra)"
    )
    out = subprocess.run(  # -S: no site-packages at all, so any third-party import would fail
        [sys.executable, "-S", "-c", code, str(COMPAT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_socket_path_defaults(monkeypatch):
    monkeypatch.delenv("CLOVE_SOCKET", raising=False)
    assert CloveClient().socket_path == "/tmp/clove.sock"
    monkeypatch.setenv("CLOVE_SOCKET", "/run/k.sock")
    assert CloveClient().socket_path == "/run/k.sock"
    assert CloveClient("/x.sock").socket_path == "/x.sock"


def test_failures_are_reported_not_raised(tmp_path, capsys):
    client = CloveClient(str(tmp_path / "none.sock"))
    assert client.connect() is False
    assert "Failed to connect" in capsys.readouterr().err
    assert client.call(SyscallOp.SYS_NOOP, b"x") is None
    assert client.echo("x") is None
    assert client.store("k", 1) == {"success": False, "error": "No response from kernel"}
    assert client.read_file("/x") == {
        "success": False,
        "content": "",
        "size": 0,
        "error": "No response from kernel",
    }
    assert client.spawn("a", "b") is None
    assert client.list_agents() == []
    assert client.kill("a") is False
    with pytest.raises(ConnectionError, match="none.sock"):
        clove_sdk.connect(str(tmp_path / "none.sock"))


def test_reply_with_unknown_opcode_gives_none(tmp_path):
    path = str(tmp_path / "odd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    client = CloveClient(path)
    assert client.connect()
    conn, _ = listener.accept()
    assert client.send(SyscallOp.SYS_NOOP, "hi")
    conn.recv(64)
    conn.sendall(Message(3, SyscallOp.SYS_NOOP, b"").serialize()[:8] + b"\x13" + b"\0" * 8)
    assert client.recv() is None
    conn.close()
    assert client.recv() is None  # EOF
    client.disconnect()
    listener.close()


# ---- every method against our kernel -------------------------------------------------------------------


class Recording:
    """Proxy that remembers which client methods a test called."""

    def __init__(self, client: CloveClient) -> None:
        self.client = client
        self.called: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.called.add(name)
        return getattr(self.client, name)


def public_methods() -> set[str]:
    skip = {"connect", "disconnect", "send", "recv", "call", "agent_id", "socket_path"}
    return {n for n in dir(CloveClient) if not n.startswith("_") and n not in skip}


def test_every_method_against_the_kernel(kernel, sdk, tmp_path):
    c = Recording(sdk)
    assert c.echo("hi") == "hi" and c.noop("") == ""
    assert sdk.agent_id > 0
    hello = c.hello()
    assert hello["success"] and hello["protocol_version"] == 1
    assert c.exit() is True
    assert c.echo("still open") == "still open"  # EXIT does not close the connection

    think = c.think("2+2?", temperature=0.1)
    assert think["success"] is False and think["error"]  # no LLM configured in tests: a reason, not a hang

    # agents
    spawned = c.spawn("cw", WORKER, sandboxed=False)
    assert spawned["success"] and spawned["status"] == "running" and spawned["pid"] > 0
    assert {"id", "name", "pid", "status", "restart_policy", "isolation"} <= spawned.keys()
    listed = c.list_agents()
    assert any(a["id"] == spawned["id"] and a["state"] == "RUNNING" for a in listed)
    assert c.pause("cw") is True
    assert next(a for a in c.list_agents() if a["name"] == "cw")["state"] == "PAUSED"
    assert c.resume(agent_id=spawned["id"]) is True
    assert c.kill("cw") is True
    assert all(a["name"] != "cw" for a in c.list_agents())
    assert c.kill(agent_id=999999) is False

    # exec, async, files
    ran = c.exec("echo out; echo err >&2; exit 3", cwd=str(tmp_path))
    assert (ran["success"], ran["exit_code"]) == (False, 3) and "out" in ran["stdout"]
    accepted = c.exec("echo async", async_=True, request_id=77)
    assert accepted["async"] is True and accepted["request_id"] == 77
    results: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while not results and time.monotonic() < deadline:
        results = c.poll_async()["results"]
        time.sleep(0.02)
    assert results[0]["request_id"] == 77 and results[0]["opcode_name"] == "EXEC"
    assert json.loads(results[0]["payload"])["stdout"].strip() == "async"
    target = tmp_path / "notes.txt"
    assert c.write_file(str(target), "one\n")["bytes_written"] == 4
    assert c.write(str(target), "two\n", "append")["success"]
    assert c.read_file(str(target)) == {"success": True, "content": "one\ntwo\n", "size": 8}
    assert c.read(str(target)) == "one\ntwo\n"
    with pytest.raises(OSError):
        c.read(str(tmp_path / "missing"))

    # IPC (to self)
    reg = c.register_name("compat-self")
    assert reg["success"] and reg["agent_id"] == sdk.agent_id
    assert c.register("compat-self")["success"]  # same id again: allowed
    assert c.send_message({"n": 1}, to_name="compat-self")["delivered_to"] == sdk.agent_id
    assert c.send_message("two", to=sdk.agent_id)["success"]
    assert c.send_message({}, to_name="nobody-here")["success"] is False
    assert c.broadcast({"n": 3}, include_self=True)["delivered_count"] >= 1
    got = c.recv_messages(max_messages=10)
    assert [m["message"] for m in got["messages"]] == [{"n": 1}, "two", {"n": 3}]
    assert all(
        m["from"] == m["from_id"] == sdk.agent_id and m["from_name"] == "compat-self" for m in got["messages"]
    )

    # permissions
    perms = c.get_permissions()["permissions"]
    assert perms["can_read"] and not perms["can_http"]
    assert c.set_permissions(level="readonly")["success"]
    assert c.get_permissions()["permissions"]["can_write"] is False
    assert c.write_file(str(target), "x")["success"] is False
    assert c.set_permissions(level="unrestricted")["success"]  # any agent may raise itself (spec §2.9)

    # state store
    assert c.store("compat:k", {"v": 1})["success"]
    assert c.fetch("compat:k")["value"] == {"v": 1}
    assert "compat:k" in c.list_keys("compat:")["keys"]
    assert c.delete_key("compat:k")["deleted"] is True
    assert c.fetch("compat:k")["exists"] is False

    # http: refused without network access (nothing leaves the machine in tests)
    refused = c.http("http://127.0.0.1:9/", timeout=2)
    assert refused["success"] is False

    # events
    assert c.subscribe(["CUSTOM"])["subscribed"] == ["CUSTOM"]
    assert c.emit_event("tick", {"i": 1})["success"]
    events = c.poll_events(10)["events"]
    assert [(e["type"], e["data"]) for e in events] == [("CUSTOM", {"i": 1, "custom_type": "tick"})]
    assert c.unsubscribe(["CUSTOM"])["success"]

    # worlds and tunnels: answered, never hanging (worlds arrive with their own issue)
    for name, args in [
        ("world_create", ("w",)),
        ("world_destroy", ("w-0001",)),
        ("world_list", ()),
        ("world_join", ("w-0001",)),
        ("world_leave", ()),
        ("world_event", ("w-0001", "disk_fail")),
        ("world_state", ("w-0001",)),
        ("world_snapshot", ("w-0001",)),
        ("world_restore", ({"name": "w"},)),
    ]:
        assert isinstance(getattr(c, name)(*args)["success"], bool), name
    for name, args in [
        ("tunnel_connect", ("ws://relay",)),
        ("tunnel_disconnect", ()),
        ("tunnel_status", ()),
        ("tunnel_list_remotes", ()),
        ("tunnel_config", ("ws://relay",)),
    ]:
        reply = getattr(c, name)(*args)
        assert reply["success"] is False and "not supported" in reply["error"], name

    # metrics
    system = c.get_system_metrics()["metrics"]
    assert system["cpu"]["count"] >= 1 and system["memory"]["total"] > 0
    assert c.get_agent_metrics(999999) == {"success": False, "error": "Agent not found", "agent_id": 999999}
    assert c.get_all_agent_metrics()["success"]
    assert c.get_cgroup_metrics("../../etc")["success"] is False

    # audit, recording, replay
    assert c.set_audit_config(log_lifecycle=True)["config"]["log_lifecycle"] is True
    audit = c.get_audit_log(category="AGENT_LIFECYCLE")
    assert {"AGENT_SPAWNED", "AGENT_PAUSED", "AGENT_RESUMED", "AGENT_KILLED"} <= {
        e["event_type"] for e in audit["entries"]
    }
    assert c.start_recording()["success"]
    c.store("rec:x", 1)
    stopped = c.stop_recording()
    assert stopped["success"]
    status = c.get_recording_status(export=True)
    assert status["state"] == "IDLE"
    assert [e["opcode_name"] for e in json.loads(status["recording"])] == ["STORE"]
    assert c.start_replay(status["recording"])["success"]
    assert c.get_replay_status()["state"] in ("running", "completed")

    missing = public_methods() - c.called
    assert not missing, f"clove_sdk methods not exercised: {sorted(missing)}"


# ---- Clove SDK programs, run as the kernel's users would ----------------------------------------------


def run_program(kernel: Kernel, name: str, *args: str) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(COMPAT),
        "CLOVE_SOCKET": kernel.socket_path,
    }
    out = subprocess.run(
        [sys.executable, str(PROGRAMS / name), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"{name} exited {out.returncode}\nstdout: {out.stdout}\nstderr: {out.stderr}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["sandboxed", "plain"])
def test_program_ipc_pingpong_with_spawned_worker(kernel, mode):
    out = run_program(kernel, "pingpong.py", *(["--plain"] if mode == "plain" else []))
    assert out["pongs"] == [0, 1, 2, 3, 4]
    assert out["pong_from"] == ["ponger"]
    assert out["pong_agent_ids"] == [out["spawned_id"]]  # C13: the spawned id is the worker's connection id
    assert out["listed"] == ["ponger-proc"]
    if mode == "plain":
        assert out["isolation"]["fully_isolated"] is False
    elif not out["isolation"]["fully_isolated"]:
        print("sandbox degraded on this machine:", out["isolation"].get("degraded_reason"))


def test_program_state_store(kernel):
    out = run_program(kernel, "state_store.py")
    assert out == {
        "store": True,
        "fetch": {"name": "tiny", "layers": 2},
        "agent_scope": {"success": True, "exists": True, "value": "mine", "scope": "agent"},
        "ttl0_exists": False,
        "prefix_keys": ["config:model", "config:seed"],
        "deleted": True,
        "after_delete": False,
    }


def test_program_events(kernel):
    out = run_program(kernel, "events.py")
    assert out["subscribed"] == ["CUSTOM", "STATE_CHANGED"]
    assert out["count"] == 2
    (custom_type, custom), (changed_type, changed) = out["events"]
    assert (custom_type, custom) == ("CUSTOM", {"target": "docs", "custom_type": "build_done"})
    assert (
        changed_type == "STATE_CHANGED" and changed["key"] == "events:last" and changed["action"] == "store"
    )
    assert out["after_unsubscribe"] == []


def test_program_audit_and_recording(kernel):
    out = run_program(kernel, "audit_and_record.py")
    assert out["config_ok"] and out["killed"]
    assert ["AGENT_SPAWNED", "audited"] in out["lifecycle"] and ["AGENT_KILLED", "audited"] in out[
        "lifecycle"
    ]
    assert out["recorded"] == 2 and out["recorded_ops"] == ["STORE", "FETCH"]
    assert out["state"] == "IDLE"
    assert out["replay"] is True and out["replay_state"] == "completed"


def test_program_exec_and_think(kernel):
    out = run_program(kernel, "exec_and_think.py")
    assert out["echo"] == "ping" and out["hello"] == 1
    assert out["exec"] == [True, "from-exec", 0]
    assert out["async_status"] == "accepted" and out["async_result"] == ["later"]
    assert out["can_read"] is True
    assert out["think"] == {"success": False, "has_reason": True}  # no LLM in tests: an error, not a hang
