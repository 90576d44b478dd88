"""The kernel's syscalls over a real socket, against spec/protocol.md and its compatibility profile."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from clove_gym.runtime.audit import read_audit_file
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.reader import read_trace


def test_noop_echo_and_identity_ignores_header_id(connect):
    a, b = connect(), connect()
    assert a.raw(Op.NOOP, b"\x00\xffhello", header_id=999) == b"\x00\xffhello"
    assert a.agent_id != 999 and a.agent_id > 0
    assert b.raw(Op.NOOP, b"x", header_id=a.agent_id) == b"x"
    assert b.agent_id != a.agent_id  # C13: the header cannot claim another identity


def test_a_read_allocates_what_arrived_not_the_whole_receive_buffer(connect):
    """Each read of a connection lands in the kernel's own buffer and is copied out at its size. A fresh
    RECV_CHUNK-sized bytes per read is above malloc's mmap threshold: an mmap, a page fault, an mremap
    and an munmap per request (NOOP round trip 43 us against 21 us)."""
    import tracemalloc

    from clove_gym.runtime.kernel import RECV_CHUNK

    client = connect()
    for _ in range(50):  # warm: the connection is identified and every path has run once
        assert client.raw(Op.NOOP, b"warm") == b"warm"
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            assert client.raw(Op.NOOP, b"ping") == b"ping"
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < RECV_CHUNK // 4, f"{peak} bytes at peak for 200 NOOPs of 4 bytes"


def test_hello_exit_unknown_tunnel_world(connect):
    c = connect()
    hello = c.call(Op.HELLO, {})
    assert hello["success"] and hello["protocol_version"] == 1 and "features" in hello
    assert c.raw(Op.EXIT) == b"goodbye"
    assert c.raw(Op.NOOP, b"still open") == b"still open"
    unknown = c.call(0x05, {})
    assert unknown == {"success": False, "error": "unknown opcode 0x05"}
    assert "not supported" in c.call(Op.TUNNEL_CONNECT, {"relay_url": "x"})["error"]
    assert "not available" in c.call(Op.WORLD_CREATE, {"name": "w"})["error"]


def test_ipc_register_send_recv_broadcast(connect):
    a, b, c = connect(), connect(), connect()
    assert a.call(Op.REGISTER, {"name": "alice"}) == {
        "success": True,
        "agent_id": a.agent_id,
        "name": "alice",
    }
    b.call(Op.REGISTER, {"name": "bob"})
    assert b.call(Op.REGISTER, {"name": "alice"}) == {"success": False, "error": "name already registered"}
    assert a.call(Op.SEND, {"to_name": "bob", "message": {"n": 1}}) == {
        "success": True,
        "delivered_to": b.agent_id,
    }
    assert a.call(Op.SEND, {"to": b.agent_id, "message": "two"})["success"]
    got = b.call(Op.RECV, {"max": 10})
    assert got["count"] == 2
    first = got["messages"][0]
    assert first["from"] == first["from_id"] == a.agent_id  # C11
    assert first["from_name"] == "alice" and first["message"] == {"n": 1} and first["age_ms"] >= 0
    assert got["messages"][1]["message"] == "two"
    assert a.call(Op.SEND, {"to_name": "nobody"}) == {
        "success": False,
        "error": "target agent not found: nobody",
    }
    assert not a.call(Op.SEND, {"message": 1})["success"]
    # unregistered c sends a broadcast: a and b receive, c does not
    assert c.call(Op.BROADCAST, {"message": {"all": True}}) == {"success": True, "delivered_count": 2}
    assert a.call(Op.BROADCAST, {"message": 1, "include_self": True})["delivered_count"] == 2
    assert a.call(Op.RECV, {})["count"] == 2
    assert c.call(Op.RECV, {})["count"] == 0


def test_disconnect_releases_name_and_mailbox(connect, kernel):
    a = connect()
    a.call(Op.REGISTER, {"name": "worker"})
    old_id = a.agent_id
    a.close()
    deadline = time.monotonic() + 5
    b = connect()
    while time.monotonic() < deadline:  # the kernel notices the EOF asynchronously
        if b.call(Op.REGISTER, {"name": "worker"})["success"]:
            break
        time.sleep(0.02)
    else:
        pytest.fail("name of a closed connection was never released (C6)")
    assert b.call(Op.SEND, {"to": old_id, "message": 1})["success"] is False


def test_state_store_scopes_ttl_keys_delete(connect):
    a, b = connect(), connect()
    assert a.call(Op.STORE, {"key": "g", "value": {"v": 1}}) == {"success": True, "key": "g"}
    assert a.call(Op.STORE, {"key": "mine", "value": 2, "scope": "agent"})["success"]
    assert b.call(Op.FETCH, {"key": "g"}) == {
        "success": True,
        "exists": True,
        "value": {"v": 1},
        "scope": "global",
    }
    assert b.call(Op.FETCH, {"key": "mine"})["exists"] is False
    assert a.call(Op.FETCH, {"key": "mine"})["value"] == 2
    assert a.call(Op.STORE, {"key": "gone", "value": 1, "ttl": 0})["success"]
    assert a.call(Op.FETCH, {"key": "gone"})["exists"] is False
    keys = a.call(Op.KEYS, {})
    assert sorted(keys["keys"]) == ["g", "mine"] and keys["count"] == 2
    assert b.call(Op.KEYS, {"prefix": "g"})["keys"] == ["g"]
    assert b.call(Op.DELETE, {"key": "mine"})["deleted"] is False
    assert b.call(Op.DELETE, {"key": "g"})["deleted"] is True
    assert a.call(Op.STORE, {"key": ""}) == {"success": False, "error": "key is required"}
    assert a.call(Op.STORE, {"key": "t", "ttl": "soon"})["success"] is False


def test_events_subscribe_emit_state_changed_and_message_received(connect):
    a, b = connect(), connect()
    b.call(Op.REGISTER, {"name": "b"})
    assert a.call(Op.SUBSCRIBE, {"event_types": ["CUSTOM", "STATE_CHANGED", "MESSAGE_RECEIVED"]})["success"]
    assert a.call(Op.SUBSCRIBE, {}) == {"success": False, "error": "No events specified"}
    emitted = b.call(Op.EMIT, {"event_type": "task_done", "data": {"x": 1}})  # C12: SDK key
    assert emitted["success"] and emitted["delivered_to"] == 1
    b.call(Op.STORE, {"key": "k", "value": 1})  # global store -> STATE_CHANGED (fast path must step aside)
    a.call(Op.SEND, {"to_name": "b", "message": "hi"})
    events = a.call(Op.POLL_EVENTS, {"max": 10})["events"]
    types = [e["type"] for e in events]
    assert types == ["CUSTOM", "STATE_CHANGED", "MESSAGE_RECEIVED"]
    assert events[0]["data"] == {"x": 1, "custom_type": "task_done"}
    assert events[1]["data"] == {"key": "k", "action": "store", "agent_id": b.agent_id}
    assert events[2]["data"]["from"] == a.agent_id and events[2]["data"]["to"] == b.agent_id
    assert a.call(Op.UNSUBSCRIBE, {"all": True})["success"]
    b.call(Op.EMIT, {"event": "again"})
    assert a.call(Op.POLL_EVENTS, {})["count"] == 0


def test_exec_sync_async_timeout_and_blocked(connect, kernel, tmp_path):
    c = connect()
    r = c.call(Op.EXEC, {"command": "echo hi; exit 3", "async": False})
    assert r == {"success": False, "stdout": "hi\n", "stderr": "", "exit_code": 3}
    r = c.call(Op.EXEC, {"command": "pwd", "cwd": str(tmp_path), "async": False})
    assert r["stdout"].strip() == str(tmp_path)
    t0 = time.monotonic()
    r = c.call(Op.EXEC, {"command": "sleep 30", "timeout": 1, "async": False})
    assert time.monotonic() - t0 < 10 and not r["success"] and "timeout" in r["error"]
    accepted = c.call(Op.EXEC, {"command": "echo later", "request_id": 77})
    assert accepted == {"success": True, "async": True, "request_id": 77, "status": "accepted"}
    deadline = time.monotonic() + 10
    results = []
    while not results and time.monotonic() < deadline:
        results = c.call(Op.ASYNC_POLL, {"max": 5})["results"]
        time.sleep(0.02)
    assert results and results[0]["request_id"] == 77 and results[0]["opcode_name"] == "EXEC"
    assert json.loads(results[0]["payload"])["stdout"] == "later\n"
    c.call(Op.SUBSCRIBE, {"event_types": ["SYSCALL_BLOCKED"]})
    denied = c.call(Op.EXEC, {"command": "sudo ls", "async": False})
    assert denied["error"] == "Permission denied: command not allowed"
    assert c.call(Op.POLL_EVENTS, {})["events"][0]["data"]["syscall"] == "EXEC"
    entries = c.call(Op.GET_AUDIT_LOG, {"category": "SECURITY"})["entries"]
    assert any(e["event_type"] == "PERMISSION_DENIED" for e in entries)


def test_blocking_syscall_keeps_fifo_and_does_not_block_others(connect):
    slow, other = connect(), connect()
    slow.send(Op.EXEC, {"command": "sleep 0.5; echo done", "async": False})
    slow.send(Op.NOOP, b"after")
    t0 = time.monotonic()
    assert other.raw(Op.NOOP, b"fast") == b"fast"
    assert time.monotonic() - t0 < 0.4  # another client is answered while the EXEC runs
    _, op1, body1 = slow.recv_frame()
    _, op2, body2 = slow.recv_frame()
    assert (op1, op2) == (Op.EXEC, Op.NOOP)  # C9: FIFO per connection
    assert json.loads(body1)["stdout"] == "done\n" and body2 == b"after"


def test_read_write_permissions_and_traversal(connect, tmp_path):
    c = connect()
    target = tmp_path / "note.txt"
    assert c.call(Op.WRITE, {"path": str(target), "content": "héllo"}) == {
        "success": True,
        "bytes_written": 6,
    }
    assert c.call(Op.WRITE, {"path": str(target), "content": "!", "mode": "append"})["success"]
    assert c.call(Op.READ, {"path": str(target)}) == {"success": True, "content": "héllo!", "size": 7}
    (tmp_path / "bin.dat").write_bytes(b"\xff\xfeok")
    assert c.call(Op.READ, {"path": str(tmp_path / "bin.dat")})["content"].endswith(
        "ok"
    )  # replaced, not failed
    assert (
        c.call(Op.READ, {"path": "/etc/shadow"})["error"] == "Permission denied: path not allowed for reading"
    )
    link = tmp_path / "innocent"
    link.symlink_to("/etc/shadow")
    assert not c.call(Op.READ, {"path": str(link)})["success"]  # symlink resolved before the check
    assert not c.call(Op.WRITE, {"path": str(link), "content": "x"})["success"]
    assert not c.call(Op.READ, {"path": f"{tmp_path}/../../etc/shadow"})["success"]
    assert c.call(Op.READ, {"path": str(tmp_path / "missing")})["error"].startswith("failed to open file")
    assert c.call(Op.SET_PERMS, {"level": "readonly"}) == {"success": True, "agent_id": c.agent_id}
    assert not c.call(Op.WRITE, {"path": str(target), "content": "no"})["success"]
    assert c.call(Op.GET_PERMS, {})["permissions"]["can_write"] is False


def test_admin_connection_may_set_rights_but_a_spawned_agent_may_only_lower(connect, agent_dir):
    a, b = connect(), connect()
    b.raw(Op.NOOP, b"learn my id")
    assert a.call(Op.SET_PERMS, {"agent_id": b.agent_id, "level": "minimal"})["success"]  # admin
    assert b.call(Op.READ, {"path": "/etc/hostname"})["success"] is False
    assert a.call(Op.SET_PERMS, {"permissions": {"can_read": "yes"}})["success"] is False
    script = agent_dir / "perms.py"
    script.write_text(
        "from clove_sdk import CloveClient\n"
        "c = CloveClient(); c.connect()\n"
        "out = {'raise': c.set_permissions(level='unrestricted'),\n"
        f"       'other': c.set_permissions(level='minimal', agent_id={a.agent_id}),\n"
        "       'lower': c.set_permissions(level='readonly'),\n"
        "       'spawn': c.spawn('x', __file__),\n"
        "       'record': c.start_recording()}\n"
        "c.store('perm-results', out)\n"
    )
    script.chmod(0o644)
    spawned = a.call(Op.SPAWN, {"name": "p", "script": str(script), "level": "standard", "sandboxed": False})
    assert spawned["success"], spawned
    deadline = time.monotonic() + 15
    while not (got := a.call(Op.FETCH, {"key": "perm-results"}))["exists"] and time.monotonic() < deadline:
        time.sleep(0.05)
    out = got["value"]
    assert out["raise"]["success"] is False and "lower" in out["raise"]["error"]
    assert out["other"]["success"] is False
    assert out["lower"]["success"] is True
    assert out["spawn"] is not None and out["spawn"]["success"] is False  # no can_spawn granted
    assert out["record"]["success"] is False and "admin" in out["record"]["error"]
    assert a.call(Op.READ, {"path": "/etc/hostname"})["success"]  # the agent did not touch a


@pytest.mark.parametrize("opcode", [op for op in Op if op not in (Op.NOOP, Op.EXIT, Op.LIST)])
def test_every_handler_answers_malformed_json_with_an_error(connect, opcode):
    c = connect()
    for payload in (b"{not json", b"[1, 2]", b"\xff\xfe", b'{"max": "10", "async": 1, "key": 5, "name": 7}'):
        body = c.raw(opcode, payload)
        obj = json.loads(body)
        if obj.get("success") is False:
            assert isinstance(obj["error"], str) and obj["error"]
    assert c.raw(Op.NOOP, b"alive") == b"alive"


def test_record_and_replay_strict_reports_first_divergence(connect, kernel, raw_client, tmp_path):
    a, b = connect(), connect()
    b.raw(Op.NOOP, b"id")
    assert a.call(Op.RECORD_START, {"include_exec": False, "max_entries": 100}) == {
        "success": True,
        "recording": True,
    }
    assert a.call(Op.RECORD_START, {})["success"] is False
    b.call(Op.REGISTER, {"name": "rb"})
    a.call(Op.STORE, {"key": "r", "value": [1, 2]})
    a.call(Op.FETCH, {"key": "r"})
    a.call(Op.SEND, {"to_name": "rb", "message": "m"})
    b.call(Op.RECV, {})
    status = a.call(Op.RECORD_STATUS, {"export": True})
    assert status["state"] == "RECORDING" and status["entry_count"] == 5
    recording = status["recording"]  # C2: the export is in `recording`
    assert isinstance(recording, str) and json.loads(recording) == json.loads(status["recording_data"])
    assert a.call(Op.RECORD_STOP, {})["entries_recorded"] == 5
    refused = a.call(Op.REPLAY_START, {"recording": recording})  # b is connected: never act as it
    assert refused["success"] is False and "live agents" in refused["error"]
    with Kernel(str(tmp_path / "fresh.sock")) as fresh:  # replay where the session can happen again
        c = raw_client(fresh.socket_path)
        c.raw(Op.NOOP, b"id")
        assert c.agent_id == a.agent_id  # ids start at 1 in every kernel
        assert c.call(Op.REPLAY_START, {"recording": recording})["total_entries"] == 5  # C3: SDK key
        status = _wait_replay(c)
        assert (
            status["state"] == "completed" and status["divergences"] == 0 and status["entries_replayed"] == 5
        )
        tampered = json.loads(recording)
        tampered[2]["response"] = json.dumps(
            {"success": True, "exists": True, "value": [9], "scope": "global"}
        )
        c.call(Op.REPLAY_START, {"recording_data": tampered})
        status = _wait_replay(c)
        assert status["state"] == "error" and status["first_divergence"]["sequence_id"] == 3
        assert "divergence at sequence 3 (FETCH" in status["error"]
        assert c.call(Op.REPLAY_START, {"recording": "[{]"})["success"] is False
        c.close()


def _wait_replay(c):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = c.call(Op.REPLAY_STATUS, {})
        if status["state"] in ("completed", "error"):
            return status
        time.sleep(0.02)
    raise AssertionError("replay never finished")


def test_audit_config_and_file(connect, kernel, tmp_path):
    c = connect()
    bad = c.call(Op.SET_AUDIT_CONFIG, {"log_ipc": "yes"})
    assert bad["success"] is False and "log_ipc" in bad["error"]
    cfg = c.call(Op.SET_AUDIT_CONFIG, {"log_ipc": True, "max_entries": 50})
    assert cfg["config"]["log_ipc"] is True and cfg["config"]["max_entries"] == 50
    c.call(Op.REGISTER, {"name": "auditee"})
    c.call(Op.SEND, {"to_name": "auditee", "message": 1})
    ipc = c.call(Op.GET_AUDIT_LOG, {"category": "IPC", "limit": 10})["entries"]
    assert [e["event_type"] for e in ipc] == ["NAME_REGISTERED", "MESSAGE_SENT"]
    assert c.call(Op.GET_AUDIT_LOG, {"category": "NOPE"})["success"] is False
    on_disk = read_audit_file(str(tmp_path / "audit.jsonl"))
    assert any(e["event_type"] == "MESSAGE_SENT" for e in on_disk)


def test_oversize_frame_is_drained_and_bad_magic_closes(connect):
    from clove_gym.runtime.protocol import HEADER, MAGIC, MAX_PAYLOAD

    c, witness = connect(), connect()
    size = MAX_PAYLOAD + 10
    c.sock.sendall(HEADER.pack(MAGIC, 0, Op.STORE, size))
    sender = threading.Thread(target=c.sock.sendall, args=(b"a" * size,))
    sender.start()
    _, op, body = c.recv_frame()
    sender.join()
    assert op == Op.STORE and json.loads(body) == {"success": False, "error": "payload too large"}
    assert c.raw(Op.NOOP, b"usable") == b"usable"
    assert c.raw(Op.NOOP, b"x" * MAX_PAYLOAD) == b"x" * MAX_PAYLOAD  # exactly 1 MiB is allowed
    c.sock.sendall(b"GARBAGE-NOT-A-FRAME")
    with pytest.raises((ConnectionError, OSError)):
        c.recv_frame()
    assert witness.raw(Op.NOOP, b"fine") == b"fine"


def test_trace_records_syscalls_events_and_messages(connect, kernel, tmp_path):
    a, b = connect(), connect()
    b.call(Op.REGISTER, {"name": "tb"})
    a.call(Op.SUBSCRIBE, {"event_types": ["CUSTOM"]})
    a.call(Op.SEND, {"to_name": "tb", "message": {"x": "y"}})
    b.call(Op.RECV, {})
    a.call(Op.EMIT, {"event_type": "CUSTOM", "data": {}})
    a.raw(Op.NOOP, b"n")
    kernel.stop()
    trace = read_trace(tmp_path / "trace.clvtrace", strict=True)
    kinds = [(r.kind, r.opcode) for r in trace.records]
    assert (0, Op.SEND) in kinds and (0, Op.RECV) in kinds and (0, Op.NOOP) in kinds
    enq = [r for r in trace.records if r.kind == 2]
    deq = [r for r in trace.records if r.kind == 3]
    assert len(enq) == len(deq) == 1 and enq[0].aux == deq[0].aux
    assert enq[0].agent_id == a.agent_id and enq[0].peer_id == b.agent_id and enq[0].req == b'{"x": "y"}'
    assert any(r.kind == 1 for r in trace.records)
    assert all(r.service_ns >= 0 for r in trace.records)


def test_metrics_system_shape(connect):
    c = connect()
    m = c.call(Op.METRICS_SYSTEM, {})["metrics"]
    assert m["memory"]["total"] > 0 and m["cpu"]["count"] >= 1 and len(m["cpu"]["load_avg"]) == 3
    assert c.call(Op.METRICS_AGENT, {"agent_id": 424242}) == {
        "success": False,
        "error": "Agent not found",
        "agent_id": 424242,
    }
    assert c.call(Op.METRICS_CGROUP, {"cgroup_path": "../../etc"})["success"] is False


def test_stale_socket_replaced_live_socket_not_stolen(tmp_path):
    from clove_gym.runtime.kernel import Kernel, KernelError

    path = str(tmp_path / "k.sock")
    Path(path).touch()  # stale file, nobody listening
    with Kernel(path) as k:
        with pytest.raises(KernelError, match="live kernel"):
            Kernel(path).start()
        assert os.path.exists(k.socket_path)
    assert not os.path.exists(path)  # removed on a clean stop


def test_unsubscribe_reports_dropped_and_bad_replay_sets_error_state(connect):
    c = connect()
    c.call(Op.SUBSCRIBE, {"events": ["CUSTOM", "AGENT_EXITED"]})
    assert c.call(Op.UNSUBSCRIBE, {"event_types": ["CUSTOM", "STATE_CHANGED"]})["unsubscribed"] == ["CUSTOM"]
    assert c.call(Op.UNSUBSCRIBE, {"all": True})["unsubscribed"] == ["AGENT_EXITED"]
    assert c.call(Op.REPLAY_START, {})["error"] == "No recording loaded"
    status = c.call(Op.REPLAY_STATUS, {})
    assert status["state"] == "error" and status["error"] == "No recording loaded"
    default = c.call(Op.METRICS_CGROUP, {})
    assert default["success"] is False and default["error"] == "Cgroup not found or not readable"
    assert default["cgroup_path"].startswith("clove/agent-")


def test_stop_after_failed_start_returns_at_once(tmp_path):
    from clove_gym.runtime.kernel import Kernel, KernelError

    path = str(tmp_path / "live.sock")
    with Kernel(path):
        second = Kernel(path)
        with pytest.raises(KernelError):
            second.start()
        t0 = time.monotonic()
        second.stop()
        assert time.monotonic() - t0 < 1.0


def test_absurd_sizes_in_config_are_refused_not_crashed(connect):
    c = connect()
    for op, payload in (
        (Op.SET_AUDIT_CONFIG, {"max_entries": 2**70}),
        (Op.RECORD_START, {"max_entries": 2**70}),
    ):
        reply = c.call(op, payload)
        assert reply["success"] is False and "max_entries" in reply["error"]
    assert c.call(Op.RECV, {"max": 2**70})["success"] is True  # clamped, answered


def test_read_write_of_a_fifo_or_device_does_not_hang_the_kernel(connect, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    c, witness = connect(), connect()
    assert "not a regular file" in c.call(Op.READ, {"path": str(fifo)})["error"]
    assert c.call(Op.WRITE, {"path": str(fifo), "content": "x"})["success"] is False
    assert "not a regular file" in c.call(Op.READ, {"path": "/dev/zero"})["error"]
    assert witness.raw(Op.NOOP, b"alive") == b"alive"
