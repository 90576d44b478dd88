"""clove_gym.runtime.client.Client: framing, every method's request, errors, timeouts, socket resolution.

Runs against a small scripted frame server (below) so each protocol fault can be produced on demand;
the end-to-end tests against the real kernel are in test_clove_sdk_compat.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clove_gym.runtime import client as client_mod
from clove_gym.runtime.client import Client, KernelConnectionError, KernelError, KernelTimeout
from clove_gym.runtime.protocol import HEADER, MAGIC, Op, encode_frame, split_frames

COMPAT = Path(__file__).resolve().parents[2] / "runtime" / "_compat"
SERVER_ID = 7


class Hangup(bytes):
    """Reply bytes after which the server hangs up."""


# A behaviour maps a request (opcode, payload) to the raw bytes to send back, or None to hang up.
Behaviour = Callable[[int, bytes], bytes | None]


def answer(opcode: int, payload: bytes) -> bytes:
    """Kernel-like replies: NOOP echoes, EXIT says goodbye, LIST is an array, the rest echo the request."""
    if opcode == Op.NOOP:
        body = payload
    elif opcode == Op.EXIT:
        body = b"goodbye"
    elif opcode == Op.LIST:
        body = b'[{"id": 3, "name": "w", "pid": 42, "state": "RUNNING", "running": true}]'
    else:
        body = json.dumps({"success": True, "echo": json.loads(payload or b"{}")}).encode()
    return encode_frame(SERVER_ID, opcode, body)


class FrameServer:
    """A Unix-socket server answering each request frame through `behaviour`, recording the requests."""

    def __init__(self, path: Path, behaviour: Behaviour = answer) -> None:
        self.path = str(path)
        self.behaviour = behaviour
        self.requests: list[tuple[int, int, bytes]] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = bytearray()
        with conn:
            while True:
                try:
                    data = conn.recv(1 << 16)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                frames, pos, _ = split_frames(buf)
                del buf[:pos]
                for agent_id, opcode, payload in frames:
                    self.requests.append((agent_id, opcode, payload))
                    out = self.behaviour(opcode, payload)
                    if out is not None:
                        conn.sendall(out)
                    if out is None or isinstance(out, Hangup):
                        conn.shutdown(socket.SHUT_RDWR)
                        return

    def close(self) -> None:
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def server(tmp_path: Path):
    srv = FrameServer(tmp_path / "k.sock")
    yield srv
    srv.close()


def served(tmp_path: Path, behaviour: Behaviour, name: str = "b.sock") -> FrameServer:
    return FrameServer(tmp_path / name, behaviour)


# ---- every method's request ---------------------------------------------------------------------------

# (method, args, kwargs, opcode, JSON payload the Clove SDK sends for it)
CALLS: list[tuple[str, tuple, dict, Op, Any]] = [
    ("hello", (), {}, Op.HELLO, {}),
    ("think", ("hi",), {"temperature": 0.5, "model": "m"}, Op.THINK,
     {"prompt": "hi", "async": False, "temperature": 0.5, "model": "m"}),
    ("think", ("see", b"\x89PNG"), {"image_mime_type": "image/png"}, Op.THINK,
     {"prompt": "see", "async": False, "image": {"data": "iVBORw==", "mime_type": "image/png"}}),
    ("spawn", ("w", "/x.py"), {"limits": {"memory": 1}}, Op.SPAWN,
     {"name": "w", "script": "/x.py", "sandboxed": True, "network": False, "restart_policy": "never",
      "max_restarts": 5, "restart_window": 300, "limits": {"memory": 1}}),
    ("kill", ("w",), {}, Op.KILL, {"name": "w"}),
    ("kill", (), {"agent_id": 4}, Op.KILL, {"id": 4}),
    ("pause", (), {"agent_id": 4}, Op.PAUSE, {"id": 4}),
    ("resume", ("w",), {}, Op.RESUME, {"name": "w"}),
    ("exec", ("ls",), {"cwd": "/tmp"}, Op.EXEC, {"command": "ls", "timeout": 30, "async": False, "cwd": "/tmp"}),
    ("exec", ("ls",), {"async_": True, "request_id": 9}, Op.EXEC,
     {"command": "ls", "timeout": 30, "async": True, "request_id": 9}),
    ("poll_async", (), {}, Op.ASYNC_POLL, {"max": 10}),
    ("read_file", ("/a",), {}, Op.READ, {"path": "/a"}),
    ("write_file", ("/a", "x"), {}, Op.WRITE, {"path": "/a", "content": "x", "mode": "write"}),
    ("write", ("/a", "x", "append"), {}, Op.WRITE, {"path": "/a", "content": "x", "mode": "append"}),
    ("register_name", ("n",), {}, Op.REGISTER, {"name": "n"}),
    ("register", ("n",), {}, Op.REGISTER, {"name": "n"}),
    ("send_message", ({"a": 1},), {"to_name": "n"}, Op.SEND, {"message": {"a": 1}, "to_name": "n"}),
    ("send_message", ("hi",), {"to": 3}, Op.SEND, {"message": "hi", "to": 3}),
    ("recv_messages", (), {}, Op.RECV, {"max": 10}),
    ("broadcast", ({"b": 2},), {"include_self": True}, Op.BROADCAST, {"message": {"b": 2}, "include_self": True}),
    ("get_permissions", (), {}, Op.GET_PERMS, {}),
    ("set_permissions", (), {"level": "unrestricted"}, Op.SET_PERMS, {"level": "unrestricted"}),
    ("set_permissions", ({"can_exec": True},), {"agent_id": 5}, Op.SET_PERMS,
     {"permissions": {"can_exec": True}, "agent_id": 5}),
    ("store", ("k", [1, 2]), {"scope": "agent", "ttl": 3}, Op.STORE,
     {"key": "k", "value": [1, 2], "scope": "agent", "ttl": 3}),
    ("fetch", ("k",), {}, Op.FETCH, {"key": "k"}),
    ("delete_key", ("k",), {}, Op.DELETE, {"key": "k"}),
    ("list_keys", (), {}, Op.KEYS, {}),
    ("list_keys", ("p:",), {}, Op.KEYS, {"prefix": "p:"}),
    ("http", ("http://x/",), {"method": "POST", "body": "b", "headers": {"h": "v"}}, Op.HTTP,
     {"url": "http://x/", "method": "POST", "timeout": 30, "async": False, "headers": {"h": "v"}, "body": "b"}),
    ("subscribe", (["CUSTOM"],), {}, Op.SUBSCRIBE, {"event_types": ["CUSTOM"]}),
    ("unsubscribe", (["CUSTOM"],), {}, Op.UNSUBSCRIBE, {"event_types": ["CUSTOM"]}),
    ("poll_events", (5,), {}, Op.POLL_EVENTS, {"max": 5}),
    ("emit_event", ("ping",), {}, Op.EMIT, {"event_type": "ping", "data": {}}),
    ("world_create", ("w",), {}, Op.WORLD_CREATE, {"name": "w", "config": {}}),
    ("world_destroy", ("w-0001",), {}, Op.WORLD_DESTROY, {"world_id": "w-0001", "force": False}),
    ("world_list", (), {}, Op.WORLD_LIST, {}),
    ("world_join", ("w-0001",), {}, Op.WORLD_JOIN, {"world_id": "w-0001"}),
    ("world_leave", (), {}, Op.WORLD_LEAVE, {}),
    ("world_event", ("w-0001", "disk_fail"), {}, Op.WORLD_EVENT,
     {"world_id": "w-0001", "event_type": "disk_fail", "params": {}}),
    ("world_state", ("w-0001",), {}, Op.WORLD_STATE, {"world_id": "w-0001"}),
    ("world_snapshot", ("w-0001",), {}, Op.WORLD_SNAPSHOT, {"world_id": "w-0001"}),
    ("world_restore", ({"id": "w"},), {}, Op.WORLD_RESTORE, {"snapshot": {"id": "w"}, "new_world_id": ""}),
    ("tunnel_connect", ("ws://r",), {"token": "t"}, Op.TUNNEL_CONNECT, {"relay_url": "ws://r", "token": "t"}),
    ("tunnel_disconnect", (), {}, Op.TUNNEL_DISCONNECT, {}),
    ("tunnel_status", (), {}, Op.TUNNEL_STATUS, {}),
    ("tunnel_list_remotes", (), {}, Op.TUNNEL_LIST_REMOTES, {}),
    ("tunnel_config", (), {"reconnect_interval": 2}, Op.TUNNEL_CONFIG, {"reconnect_interval": 2}),
    ("get_system_metrics", (), {}, Op.METRICS_SYSTEM, {}),
    ("get_agent_metrics", (), {"agent_id": 2}, Op.METRICS_AGENT, {"agent_id": 2}),
    ("get_all_agent_metrics", (), {}, Op.METRICS_ALL_AGENTS, {}),
    ("get_cgroup_metrics", ("clove/x",), {}, Op.METRICS_CGROUP, {"cgroup_path": "clove/x"}),
    ("get_audit_log", (), {"category": "SECURITY", "since_id": 4}, Op.GET_AUDIT_LOG,
     {"limit": 100, "category": "SECURITY", "since_id": 4}),
    ("set_audit_config", (), {"log_ipc": True}, Op.SET_AUDIT_CONFIG, {"log_ipc": True}),
    ("start_recording", (), {"include_exec": True}, Op.RECORD_START,
     {"include_think": False, "include_http": False, "include_exec": True, "max_entries": 50000}),
    ("stop_recording", (), {}, Op.RECORD_STOP, {}),
    ("get_recording_status", (True,), {}, Op.RECORD_STATUS, {"export": True}),
    ("start_replay", ("[]",), {}, Op.REPLAY_START, {"recording": "[]"}),
    ("get_replay_status", (), {}, Op.REPLAY_STATUS, {}),
]  # fmt: skip


@pytest.mark.parametrize(("method", "args", "kwargs", "opcode", "expected"), CALLS)
def test_each_method_sends_the_clove_request(server, method, args, kwargs, opcode, expected):
    with Client(server.path) as kernel:
        result = getattr(kernel, method)(*args, **kwargs)
        assert kernel.agent_id == SERVER_ID
    _, sent_op, payload = server.requests[-1]
    assert sent_op == opcode
    assert json.loads(payload) == expected
    if isinstance(result, dict) and "echo" in result:
        assert result == {"success": True, "echo": expected}


def test_same_request_bytes_as_the_clove_sdk(server, monkeypatch):
    """Our Client and the clove_sdk compat package put identical frames on the wire for every method."""
    monkeypatch.syspath_prepend(str(COMPAT))
    from clove_sdk import CloveClient

    sdk = CloveClient(server.path)
    assert sdk.connect()
    ours = Client(server.path)
    for method, args, kwargs, _, _ in CALLS:
        getattr(ours, method)(*args, **kwargs)
        getattr(sdk, method)(*args, **kwargs)
        mine, theirs = server.requests[-2], server.requests[-1]
        assert mine[1:] == theirs[1:], method
    sdk.disconnect()
    ours.close()


def test_raw_results_echo_exit_list_and_read(server):
    with Client(server.path) as kernel:
        assert kernel.echo("héllo") == "héllo"
        assert kernel.noop("") == ""
        assert kernel.exit() is True
        assert kernel.list_agents()[0]["name"] == "w"
        reply = kernel.call(Op.NOOP, b"\x00\xff")
        assert (reply.agent_id, reply.opcode, reply.payload) == (SERVER_ID, Op.NOOP, b"\x00\xff")
        assert kernel.kill() is False  # no target: nothing sent, like the SDK
    assert [op for _, op, _ in server.requests] == [Op.NOOP, Op.NOOP, Op.EXIT, Op.LIST, Op.NOOP]


def test_read_alias_returns_content_or_raises(tmp_path):
    def reader(opcode: int, payload: bytes) -> bytes:
        path = json.loads(payload)["path"]
        body = {"success": True, "content": "data", "size": 4} if path == "/ok" else {
            "success": False, "error": "failed to open file", "content": "", "size": 0}  # fmt: skip
        return encode_frame(1, opcode, json.dumps(body).encode())

    srv = served(tmp_path, reader)
    with Client(srv.path) as kernel:
        assert kernel.read("/ok") == "data"
        with pytest.raises(OSError, match="failed to open file"):
            kernel.read("/missing")
    srv.close()


def test_replies_larger_than_the_request_limit(tmp_path):
    big = "x" * (3 << 20)
    srv = served(
        tmp_path, lambda op, p: encode_frame(1, op, json.dumps({"success": True, "content": big}).encode())
    )
    with Client(srv.path) as kernel:
        assert kernel.read_file("/big")["content"] == big
    srv.close()


# ---- faults ---------------------------------------------------------------------------------------


def test_mismatched_reply_opcode_is_an_error(tmp_path):
    srv = served(tmp_path, lambda op, p: encode_frame(1, Op.FETCH, b"{}"))
    kernel = Client(srv.path)
    with pytest.raises(KernelError, match="reply opcode FETCH does not match request opcode STORE"):
        kernel.store("k", 1)
    assert not kernel.connected  # the stream is out of step: never reused
    with pytest.raises(KernelConnectionError, match="not connected"):
        kernel.fetch("k")
    srv.close()


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"not json", "STORE reply is not JSON"),
        (b"[1, 2]", "STORE reply must be a JSON object"),
        (b"\xff\xfe", "STORE reply is not JSON"),
    ],
)
def test_malformed_reply_payload_is_an_error(tmp_path, reply, message):
    srv = served(tmp_path, lambda op, p: encode_frame(1, op, reply))
    with Client(srv.path) as kernel, pytest.raises(KernelError, match=message):
        kernel.store("k", 1)
    srv.close()


def test_bad_magic_reply_is_an_error(tmp_path):
    srv = served(tmp_path, lambda op, p: HEADER.pack(MAGIC ^ 1, 1, op, 2) + b"{}")
    kernel = Client(srv.path)
    with pytest.raises(KernelError, match="bad magic"):
        kernel.hello()
    assert not kernel.connected
    srv.close()


def test_lost_connection_raises_connection_error(tmp_path):
    srv = served(tmp_path, lambda op, p: None if op == Op.STORE else answer(op, p))
    kernel = Client(srv.path)
    assert kernel.echo("a") == "a"
    with pytest.raises(KernelConnectionError, match="STORE: the kernel closed the connection") as info:
        kernel.store("k", 1)
    assert isinstance(info.value, ConnectionError)
    with pytest.raises(ConnectionError):
        kernel.echo("b")
    srv.close()


def test_truncated_reply_frame_raises_connection_error(tmp_path):
    srv = served(tmp_path, lambda op, p: Hangup(encode_frame(1, op, b'{"success": true}')[:10]))
    with Client(srv.path) as kernel, pytest.raises(KernelConnectionError, match="closed the connection"):
        kernel.hello()  # 10 header bytes, then the server hangs up
    srv.close()


def test_timeout_then_the_late_reply_is_skipped(tmp_path):
    def slow_first(op: int, payload: bytes) -> bytes:
        if payload == b"slow":
            time.sleep(1.0)
        return answer(op, payload)

    srv = served(tmp_path, slow_first)
    kernel = Client(srv.path, timeout=5.0)
    started = time.monotonic()
    with pytest.raises(KernelTimeout, match="NOOP: no reply within 0.2 s") as info:
        kernel.echo("slow", call_timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - started < 0.9
    assert kernel.connected
    assert kernel.echo("next") == "next"  # not "slow": the late reply was dropped
    assert kernel.echo("again") == "again"
    kernel.close()
    srv.close()


def test_exec_waits_for_its_own_timeout(tmp_path, server):
    kernel = Client(server.path, timeout=0.5)
    assert kernel._wait(None, 30 + client_mod._EXEC_MARGIN) == 35.0
    assert kernel._wait(2.0, 35.0) == 2.0  # an explicit call_timeout wins
    assert kernel._wait(None, client_mod.THINK_TIMEOUT) == client_mod.THINK_TIMEOUT
    kernel.close()


def test_threads_share_one_client(server):
    kernel = Client(server.path)
    errors: list[str] = []

    def worker(tag: int) -> None:
        for i in range(100):
            text = f"{tag}:{i}"
            if kernel.echo(text) != text:
                errors.append(text)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    kernel.close()


# ---- socket resolution ----------------------------------------------------------------------------


def test_explicit_path_beats_environment(tmp_path, monkeypatch):
    env_srv, arg_srv = served(tmp_path, answer, "env.sock"), served(tmp_path, answer, "arg.sock")
    monkeypatch.setenv("CLOVE_SOCKET", env_srv.path)
    with Client(arg_srv.path) as kernel:
        kernel.hello()
        assert kernel.socket_path == arg_srv.path
    with Client() as kernel:
        kernel.hello()
        assert kernel.socket_path == env_srv.path
    assert len(arg_srv.requests) == len(env_srv.requests) == 1
    env_srv.close()
    arg_srv.close()


def test_unreachable_explicit_or_env_path_is_an_error(tmp_path, monkeypatch):
    with pytest.raises(KernelConnectionError, match="cannot connect to the kernel at .*nowhere.sock"):
        Client(str(tmp_path / "nowhere.sock"))
    monkeypatch.setenv("CLOVE_SOCKET", str(tmp_path / "gone.sock"))
    with pytest.raises(ConnectionError, match="gone.sock"):
        Client()


def test_default_socket_used_when_a_kernel_answers(tmp_path, monkeypatch):
    srv = served(tmp_path, answer, "default.sock")
    monkeypatch.delenv("CLOVE_SOCKET", raising=False)
    monkeypatch.setattr(client_mod, "DEFAULT_SOCKET_PATH", srv.path)
    with Client() as kernel:
        assert kernel.hello()["success"]
        assert kernel.socket_path == srv.path
    srv.close()


def test_stale_default_socket_falls_back_to_the_embedded_kernel(tmp_path, monkeypatch):
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()  # the file stays, nothing listens: a stale socket
    monkeypatch.delenv("CLOVE_SOCKET", raising=False)
    monkeypatch.setattr(client_mod, "DEFAULT_SOCKET_PATH", str(stale))
    try:
        from clove_gym.runtime import embedded
    except ImportError as exc:
        pytest.skip(f"clove_gym.runtime.embedded not available yet: {exc}")
    with Client() as kernel:
        assert kernel.socket_path == embedded.socket_path()
        assert kernel.echo("embedded") == "embedded"
        assert kernel.hello()["success"]


def test_not_connected_client(server):
    kernel = Client(server.path, connect=False)
    with pytest.raises(KernelConnectionError, match="HELLO: not connected"):
        kernel.hello()
    kernel.connect()
    assert kernel.hello()["success"]
    kernel.close()
    kernel.close()  # idempotent


# ---- against the real kernel ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel():
    from clove_gym.runtime.kernel import Kernel

    with Kernel() as k:
        yield k


def test_against_the_kernel(kernel, tmp_path):
    worker = Path(__file__).resolve().parent / "clove_programs" / "pong_worker.py"
    with Client(kernel.socket_path) as k:
        assert k.echo("x") == "x" and k.agent_id > 0
        spawned = k.spawn("client-w", str(worker), sandboxed=False)
        assert spawned["success"] and spawned["status"] == "running"
        assert [a["name"] for a in k.list_agents()] == ["client-w"]
        metrics = k.get_agent_metrics(spawned["id"])["metrics"]
        assert metrics["pid"] == spawned["pid"] and metrics["process"]["pid"] == spawned["pid"]
        assert k.kill(agent_id=spawned["id"]) is True
        assert k.list_agents() == []
        assert k.store("client:k", {"a": 1}, scope="agent") == {"success": True, "key": "client:k"}
        assert k.fetch("client:k") == {"success": True, "exists": True, "value": {"a": 1}, "scope": "agent"}
        think = k.think("hi", max_tokens=5)
        assert think["success"] is False and think["error"]  # no LLM configured: an answer, not a hang
        assert k.exec("printf ok")["stdout"] == "ok"


def test_timeout_against_the_kernel_keeps_the_connection(kernel):
    with Client(kernel.socket_path) as k:
        with pytest.raises(KernelTimeout, match="EXEC: no reply within 0.2 s"):
            k.exec("sleep 0.6", call_timeout=0.2)
        assert k.echo("next") == "next"  # waits behind the EXEC (FIFO), then gets its own reply
        assert k.exec("echo done")["stdout"].strip() == "done"
