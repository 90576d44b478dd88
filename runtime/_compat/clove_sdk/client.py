"""Client for the Clove kernel wire protocol, with the published Clove SDK's names, defaults and results.

Frames are a little-endian `<IIBQ` header (magic, agent id, opcode, payload size) and a payload, JSON
for almost every call (../../../../shared/spec/protocol.md §1). Like the published SDK, failures are
reported, not raised: `connect()` returns False, `call()` returns None, JSON helpers return a dict with
`success: False` and `error`. The one deliberate difference: with no socket path given, the client uses
`$CLOVE_SOCKET` (set by the kernel for the agents it spawns) before `/tmp/clove.sock` (C5, C8).

Written by hand because the SDK is the interface being provided; it must import with nothing but the
standard library.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import sys
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

MAGIC_BYTES = 0x41474E54  # "AGNT" as a little-endian u32: the wire starts with b"TNGA"
HEADER_SIZE = 17
MAX_PAYLOAD_SIZE = 1024 * 1024
DEFAULT_SOCKET_PATH = "/tmp/clove.sock"
_HEADER = struct.Struct("<IIBQ")
_NO_REPLY = "No response from kernel"


class SyscallOp(IntEnum):
    """Opcode values of the Clove protocol (spec §2.0)."""

    SYS_NOOP = 0x00
    SYS_THINK = 0x01
    SYS_EXEC = 0x02
    SYS_READ = 0x03
    SYS_WRITE = 0x04
    SYS_SPAWN = 0x10
    SYS_KILL = 0x11
    SYS_LIST = 0x12
    SYS_PAUSE = 0x14
    SYS_RESUME = 0x15
    SYS_SEND = 0x20
    SYS_RECV = 0x21
    SYS_BROADCAST = 0x22
    SYS_REGISTER = 0x23
    SYS_STORE = 0x30
    SYS_FETCH = 0x31
    SYS_DELETE = 0x32
    SYS_KEYS = 0x33
    SYS_GET_PERMS = 0x40
    SYS_SET_PERMS = 0x41
    SYS_HTTP = 0x50
    SYS_SUBSCRIBE = 0x60
    SYS_UNSUBSCRIBE = 0x61
    SYS_POLL_EVENTS = 0x62
    SYS_EMIT = 0x63
    SYS_RECORD_START = 0x70
    SYS_RECORD_STOP = 0x71
    SYS_RECORD_STATUS = 0x72
    SYS_REPLAY_START = 0x73
    SYS_REPLAY_STATUS = 0x74
    SYS_GET_AUDIT_LOG = 0x76
    SYS_SET_AUDIT_CONFIG = 0x77
    SYS_ASYNC_POLL = 0x80
    SYS_WORLD_CREATE = 0xA0
    SYS_WORLD_DESTROY = 0xA1
    SYS_WORLD_LIST = 0xA2
    SYS_WORLD_JOIN = 0xA3
    SYS_WORLD_LEAVE = 0xA4
    SYS_WORLD_EVENT = 0xA5
    SYS_WORLD_STATE = 0xA6
    SYS_WORLD_SNAPSHOT = 0xA7
    SYS_WORLD_RESTORE = 0xA8
    SYS_TUNNEL_CONNECT = 0xB0
    SYS_TUNNEL_DISCONNECT = 0xB1
    SYS_TUNNEL_STATUS = 0xB2
    SYS_TUNNEL_LIST_REMOTES = 0xB3
    SYS_TUNNEL_CONFIG = 0xB4
    SYS_METRICS_SYSTEM = 0xC0
    SYS_METRICS_AGENT = 0xC1
    SYS_METRICS_ALL_AGENTS = 0xC2
    SYS_METRICS_CGROUP = 0xC3
    SYS_LLM_REPORT = 0xF0
    SYS_HELLO = 0xFE
    SYS_EXIT = 0xFF


@dataclass
class Message:
    """One frame: the sender's agent id, the opcode and the raw payload."""

    agent_id: int
    opcode: SyscallOp
    payload: bytes

    def serialize(self) -> bytes:
        return _HEADER.pack(MAGIC_BYTES, self.agent_id, self.opcode, len(self.payload)) + self.payload

    @classmethod
    def deserialize(cls, data: bytes) -> Message | None:
        """The frame at the start of `data`, or None if it is short, oversized or has a bad magic/opcode."""
        if len(data) < HEADER_SIZE:
            return None
        magic, agent_id, opcode, size = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTES or size > MAX_PAYLOAD_SIZE or len(data) < HEADER_SIZE + size:
            return None
        try:
            op = SyscallOp(opcode)
        except ValueError:
            return None
        return cls(agent_id, op, bytes(data[HEADER_SIZE : HEADER_SIZE + size]))

    @property
    def payload_str(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


def default_socket_path() -> str:
    """`$CLOVE_SOCKET` when set (spawned agents get it), else /tmp/clove.sock."""
    return os.environ.get("CLOVE_SOCKET") or DEFAULT_SOCKET_PATH


def _target(name: str | None, agent_id: int | None) -> dict[str, Any] | None:
    """KILL/PAUSE/RESUME target: the name if given, else a non-zero id, else nothing to send."""
    if name:
        return {"name": name}
    if agent_id:
        return {"id": agent_id}
    return None


class CloveClient:
    """Synchronous client: one request, one reply, in order, over a Unix stream socket."""

    def __init__(self, socket_path: str | None = None):
        self.socket_path = socket_path or default_socket_path()
        self._sock: socket.socket | None = None
        self._agent_id = 0

    @property
    def agent_id(self) -> int:
        """The id the kernel gave this connection (valid after the first reply)."""
        return self._agent_id

    # ---- transport -------------------------------------------------------------------------------

    def connect(self) -> bool:
        """Connect to the kernel; False (with the reason printed) on failure."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            print(f"Failed to connect to {self.socket_path}: {exc}", file=sys.stderr)
            return False
        self._sock = sock
        return True

    def disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, opcode: SyscallOp | int, payload: bytes | str = b"") -> bool:
        """Send one frame; False when not connected or the socket fails."""
        if self._sock is None:
            return False
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        try:
            self._sock.sendall(Message(self._agent_id, opcode, data).serialize())
        except OSError as exc:
            print(f"Send failed: {exc}", file=sys.stderr)
            return False
        return True

    def recv(self) -> Message | None:
        """Read one frame; None on EOF, socket error, bad magic or an opcode outside SyscallOp."""
        if self._sock is None:
            return None
        try:
            header = self._recv_exact(HEADER_SIZE)
            if header is None:
                return None
            magic, agent_id, opcode, size = _HEADER.unpack(header)
            if magic != MAGIC_BYTES:
                print(f"Invalid magic bytes: 0x{magic:08x}", file=sys.stderr)
                return None
            payload = self._recv_exact(size) if size else b""
            if payload is None:
                return None
            self._agent_id = agent_id
            return Message(agent_id, SyscallOp(opcode), payload)
        except (OSError, ValueError) as exc:
            print(f"Receive failed: {exc}", file=sys.stderr)
            return None

    def _recv_exact(self, n: int) -> bytes | None:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def call(self, opcode: SyscallOp | int, payload: bytes | str = b"") -> Message | None:
        """Send a request and wait for its reply."""
        if not self.send(opcode, payload):
            return None
        return self.recv()

    def _json(self, opcode: SyscallOp, payload: dict[str, Any], **fallback: Any) -> dict[str, Any]:
        """Round trip with a JSON request; the decoded reply, or `fallback` + success/error on failure."""
        reply = self.call(opcode, json.dumps(payload))
        if reply is None:
            return {"success": False, **fallback, "error": _NO_REPLY}
        try:
            return json.loads(reply.payload_str)
        except json.JSONDecodeError:
            return {"success": False, **fallback, "error": reply.payload_str}

    # ---- core ------------------------------------------------------------------------------------

    def echo(self, message: str) -> str | None:
        """NOOP: the kernel echoes the bytes back."""
        reply = self.call(SyscallOp.SYS_NOOP, message)
        return reply.payload_str if reply else None

    def noop(self, message: str) -> str | None:
        return self.echo(message)

    def hello(self) -> dict[str, Any]:
        """HELLO: protocol version and kernel features."""
        return self._json(SyscallOp.SYS_HELLO, {})

    def exit(self) -> bool:
        """EXIT: the kernel answers "goodbye"; the connection stays open."""
        return self.call(SyscallOp.SYS_EXIT) is not None

    def think(
        self,
        prompt: str,
        image: bytes | None = None,
        image_mime_type: str = "image/jpeg",
        system_instruction: str | None = None,
        thinking_level: str | None = None,
        temperature: float | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """THINK, synchronously through the kernel's LLM queue: {success, content, tokens | error}."""
        payload: dict[str, Any] = {"prompt": prompt, "async": False}
        if image:
            payload["image"] = {"data": base64.b64encode(image).decode("ascii"), "mime_type": image_mime_type}
        if system_instruction:
            payload["system_instruction"] = system_instruction
        if thinking_level:
            payload["thinking_level"] = thinking_level
        if temperature is not None:
            payload["temperature"] = temperature
        if model:
            payload["model"] = model
        return self._json(SyscallOp.SYS_THINK, payload, content="")

    # ---- agents ----------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        script: str,
        sandboxed: bool = True,
        network: bool = False,
        limits: dict[str, Any] | None = None,
        restart_policy: str = "never",
        max_restarts: int = 5,
        restart_window: int = 300,
    ) -> dict[str, Any] | None:
        """SPAWN a script as an agent process; the kernel's reply, or None without one."""
        payload: dict[str, Any] = {
            "name": name,
            "script": script,
            "sandboxed": sandboxed,
            "network": network,
            "restart_policy": restart_policy,
            "max_restarts": max_restarts,
            "restart_window": restart_window,
        }
        if limits:
            payload["limits"] = limits
        reply = self.call(SyscallOp.SYS_SPAWN, json.dumps(payload))
        if reply is None:
            return None
        try:
            return json.loads(reply.payload_str)
        except json.JSONDecodeError:
            return {"success": False, "error": reply.payload_str}

    def _lifecycle(self, opcode: SyscallOp, key: str, name: str | None, agent_id: int | None) -> bool:
        target = _target(name, agent_id)
        if target is None:
            return False
        return bool(self._json(opcode, target).get(key, False))

    def kill(self, name: str | None = None, agent_id: int | None = None) -> bool:
        return self._lifecycle(SyscallOp.SYS_KILL, "killed", name, agent_id)

    def pause(self, name: str | None = None, agent_id: int | None = None) -> bool:
        return self._lifecycle(SyscallOp.SYS_PAUSE, "success", name, agent_id)

    def resume(self, name: str | None = None, agent_id: int | None = None) -> bool:
        return self._lifecycle(SyscallOp.SYS_RESUME, "success", name, agent_id)

    def list_agents(self) -> list[dict[str, Any]]:
        """LIST: the spawned agents ([] without a usable reply)."""
        reply = self.call(SyscallOp.SYS_LIST)
        if reply is None:
            return []
        try:
            agents = json.loads(reply.payload_str)
        except json.JSONDecodeError:
            return []
        return agents if isinstance(agents, list) else []

    # ---- exec and files --------------------------------------------------------------------------

    def exec(
        self,
        command: str,
        cwd: str | None = None,
        timeout: int = 30,
        async_: bool = False,
        request_id: int | None = None,
    ) -> dict[str, Any]:
        """EXEC a shell command; with async_=True the result comes later through poll_async()."""
        payload: dict[str, Any] = {"command": command, "timeout": timeout, "async": async_}
        if cwd:
            payload["cwd"] = cwd
        if request_id is not None:
            payload["request_id"] = request_id
        return self._json(SyscallOp.SYS_EXEC, payload, stdout="", stderr="", exit_code=-1)

    def poll_async(self, max_results: int = 10) -> dict[str, Any]:
        """ASYNC_POLL: finished async EXEC/HTTP/THINK results (each `payload` is JSON text)."""
        return self._json(SyscallOp.SYS_ASYNC_POLL, {"max": max_results}, count=0, results=[])

    def read_file(self, path: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_READ, {"path": path}, content="", size=0)

    def write_file(self, path: str, content: str, mode: str = "write") -> dict[str, Any]:
        payload = {"path": path, "content": content, "mode": mode}
        return self._json(SyscallOp.SYS_WRITE, payload, bytes_written=0)

    # ---- IPC -------------------------------------------------------------------------------------

    def register_name(self, name: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_REGISTER, {"name": name})

    def send_message(self, message: Any, to: int | None = None, to_name: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": message}
        if to is not None:
            payload["to"] = to
        if to_name is not None:
            payload["to_name"] = to_name
        return self._json(SyscallOp.SYS_SEND, payload)

    def recv_messages(self, max_messages: int = 10) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_RECV, {"max": max_messages}, messages=[], count=0)

    def broadcast(self, message: Any, include_self: bool = False) -> dict[str, Any]:
        payload = {"message": message, "include_self": include_self}
        return self._json(SyscallOp.SYS_BROADCAST, payload, delivered_count=0)

    # ---- permissions -----------------------------------------------------------------------------

    def get_permissions(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_GET_PERMS, {})

    def set_permissions(
        self, permissions: dict[str, Any] | None = None, level: str | None = None, agent_id: int | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if permissions:
            payload["permissions"] = permissions
        if level:
            payload["level"] = level
        if agent_id is not None:
            payload["agent_id"] = agent_id
        return self._json(SyscallOp.SYS_SET_PERMS, payload)

    # ---- state store -----------------------------------------------------------------------------

    def store(self, key: str, value: Any, scope: str = "global", ttl: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"key": key, "value": value, "scope": scope}
        if ttl is not None:
            payload["ttl"] = ttl
        return self._json(SyscallOp.SYS_STORE, payload)

    def fetch(self, key: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_FETCH, {"key": key})

    def delete_key(self, key: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_DELETE, {"key": key})

    def list_keys(self, prefix: str = "") -> dict[str, Any]:
        return self._json(SyscallOp.SYS_KEYS, {"prefix": prefix} if prefix else {})

    # ---- HTTP ------------------------------------------------------------------------------------

    def http(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: str | None = None,
        timeout: int = 30,
        async_: bool = False,
        request_id: int | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"url": url, "method": method, "timeout": timeout, "async": async_}
        if headers:
            payload["headers"] = headers
        if body:
            payload["body"] = body
        if request_id is not None:
            payload["request_id"] = request_id
        return self._json(SyscallOp.SYS_HTTP, payload, body="")

    # ---- events ----------------------------------------------------------------------------------

    def subscribe(self, event_types: list[str]) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_SUBSCRIBE, {"event_types": event_types})

    def unsubscribe(self, event_types: list[str]) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_UNSUBSCRIBE, {"event_types": event_types})

    def poll_events(self, max_events: int = 10) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_POLL_EVENTS, {"max": max_events}, events=[], count=0)

    def emit_event(self, event_type: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_EMIT, {"event_type": event_type, "data": data or {}})

    # ---- worlds ----------------------------------------------------------------------------------

    def world_create(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_CREATE, {"name": name, "config": config or {}})

    def world_destroy(self, world_id: str, force: bool = False) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_DESTROY, {"world_id": world_id, "force": force})

    def world_list(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_LIST, {}, worlds=[], count=0)

    def world_join(self, world_id: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_JOIN, {"world_id": world_id})

    def world_leave(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_LEAVE, {})

    def world_event(
        self, world_id: str, event_type: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        payload = {"world_id": world_id, "event_type": event_type, "params": params or {}}
        return self._json(SyscallOp.SYS_WORLD_EVENT, payload)

    def world_state(self, world_id: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_STATE, {"world_id": world_id})

    def world_snapshot(self, world_id: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_WORLD_SNAPSHOT, {"world_id": world_id})

    def world_restore(self, snapshot: dict[str, Any], new_world_id: str | None = None) -> dict[str, Any]:
        payload = {"snapshot": snapshot, "new_world_id": new_world_id or ""}
        return self._json(SyscallOp.SYS_WORLD_RESTORE, payload)

    # ---- tunnel ----------------------------------------------------------------------------------

    def tunnel_connect(
        self, relay_url: str, machine_id: str | None = None, token: str | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"relay_url": relay_url}
        if machine_id:
            payload["machine_id"] = machine_id
        if token:
            payload["token"] = token
        return self._json(SyscallOp.SYS_TUNNEL_CONNECT, payload)

    def tunnel_disconnect(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_TUNNEL_DISCONNECT, {})

    def tunnel_status(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_TUNNEL_STATUS, {})

    def tunnel_list_remotes(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_TUNNEL_LIST_REMOTES, {}, agents=[])

    def tunnel_config(
        self,
        relay_url: str | None = None,
        machine_id: str | None = None,
        token: str | None = None,
        reconnect_interval: int | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        if relay_url:
            payload["relay_url"] = relay_url
        if machine_id:
            payload["machine_id"] = machine_id
        if token:
            payload["token"] = token
        if reconnect_interval is not None:
            payload["reconnect_interval"] = reconnect_interval
        return self._json(SyscallOp.SYS_TUNNEL_CONFIG, payload)

    # ---- metrics ---------------------------------------------------------------------------------

    def get_system_metrics(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_METRICS_SYSTEM, {})

    def get_agent_metrics(self, agent_id: int | None = None) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_METRICS_AGENT, {} if agent_id is None else {"agent_id": agent_id})

    def get_all_agent_metrics(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_METRICS_ALL_AGENTS, {}, agents=[])

    def get_cgroup_metrics(self, cgroup_path: str | None = None) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_METRICS_CGROUP, {"cgroup_path": cgroup_path} if cgroup_path else {})

    # ---- audit, recording, replay ----------------------------------------------------------------

    def get_audit_log(
        self, category: str | None = None, agent_id: int | None = None, since_id: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"limit": limit}
        if category:
            payload["category"] = category
        if agent_id:
            payload["agent_id"] = agent_id
        if since_id:
            payload["since_id"] = since_id
        return self._json(SyscallOp.SYS_GET_AUDIT_LOG, payload)

    def set_audit_config(self, **config: Any) -> dict[str, Any]:
        """SET_AUDIT_CONFIG with any of max_entries, log_syscalls, log_security, log_lifecycle, log_ipc,
        log_state, log_resource, log_network, log_world."""
        return self._json(SyscallOp.SYS_SET_AUDIT_CONFIG, config)

    def start_recording(
        self,
        include_think: bool = False,
        include_http: bool = False,
        include_exec: bool = False,
        filter_agents: list[int] | None = None,
        max_entries: int = 50000,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "include_think": include_think,
            "include_http": include_http,
            "include_exec": include_exec,
            "max_entries": max_entries,
        }
        if filter_agents:
            payload["filter_agents"] = filter_agents
        return self._json(SyscallOp.SYS_RECORD_START, payload)

    def stop_recording(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_RECORD_STOP, {})

    def get_recording_status(self, export: bool = False) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_RECORD_STATUS, {"export": export})

    def start_replay(self, recording_data: str) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_REPLAY_START, {"recording": recording_data})

    def get_replay_status(self) -> dict[str, Any]:
        return self._json(SyscallOp.SYS_REPLAY_STATUS, {})

    # ---- aliases and context manager -------------------------------------------------------------

    def read(self, path: str) -> str:
        """The file's content; raises OSError with the kernel's reason on failure."""
        result = self.read_file(path)
        if result.get("success"):
            return result.get("content", "")
        raise OSError(result.get("error", "Read failed"))

    def write(self, path: str, content: str, mode: str = "write") -> dict[str, Any]:
        return self.write_file(path, content, mode)

    def register(self, name: str) -> dict[str, Any]:
        return self.register_name(name)

    def __enter__(self) -> CloveClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disconnect()


AgentOSClient = CloveClient  # the SDK's older name


def connect(socket_path: str | None = None) -> CloveClient:
    """A connected client; raises ConnectionError when the kernel cannot be reached."""
    client = CloveClient(socket_path)
    if not client.connect():
        raise ConnectionError(f"Failed to connect to {client.socket_path}")
    return client
