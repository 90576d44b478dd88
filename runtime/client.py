"""Our Python SDK: the Clove SDK's method names and result shapes, with errors that cannot be missed.

    from clove_gym.runtime.client import Client

    with Client() as kernel:                  # socket: arg > $CLOVE_SOCKET > live /tmp/clove.sock > embedded
        kernel.register_name("planner")
        kernel.store("plan", {"steps": 3})
        answer = kernel.think("Summarise the plan", call_timeout=120)

Differences from `clove_sdk.CloveClient` (same methods, arguments and returned dicts otherwise):
  * a lost connection raises `KernelConnectionError` (a `ConnectionError`), a missing reply within the
    call's timeout raises `KernelTimeout` (a `TimeoutError`), a malformed or mismatched reply raises
    `KernelError`; nothing returns a silent None;
  * every method takes a keyword-only `call_timeout` (seconds; None waits forever); the default is the
    client's `timeout`, stretched for EXEC/HTTP to their own `timeout` plus a margin and for THINK to
    `THINK_TIMEOUT`; a reply that arrives after its call timed out is recognised and skipped;
  * `think()` sends THINK synchronously (`"async": false`) through the kernel's LLM queue;
  * `call(opcode, payload)` is the raw round trip, returning a `Reply`.

The method bodies live in `SyscallApi` and are shared with `aclient.AsyncClient`: each builds its
request and hands it to `_roundtrip`, which the sync client runs and the async client turns into a
coroutine, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, NotRequired, TypedDict, TypeVar

from clove_gym.runtime.protocol import SPLIT_BAD_MAGIC, Op, encode_frame, opcode_name, split_frames

DEFAULT_SOCKET_PATH = "/tmp/clove.sock"
DEFAULT_TIMEOUT = 30.0
THINK_TIMEOUT = 300.0  # an LLM answer behind a fair queue can take minutes
_EXEC_MARGIN = 5.0  # EXEC/HTTP wait their own timeout plus this before the client gives up
_REPLY_LIMIT = 1 << 40  # replies are not size-limited (READ/RECV may exceed 1 MiB, spec §1.4)
_RECV_CHUNK = 1 << 16

T = TypeVar("T")


class KernelError(Exception):
    """The kernel answered something the protocol does not allow (or the call could not complete)."""


class KernelConnectionError(KernelError, ConnectionError):
    """No connection to the kernel, or it was lost."""


class KernelTimeout(KernelError, TimeoutError):
    """No reply within the call's timeout; the connection stays usable."""


# ---- result shapes (spec §2; `success: false` replies add `error`) --------------------------------------


class Reply(NamedTuple):
    """A raw reply frame."""

    agent_id: int
    opcode: int
    payload: bytes

    def json(self) -> Any:
        return _decode_json(self.opcode, self.payload)


class Result(TypedDict):
    success: bool
    error: NotRequired[str]


class HelloResult(Result):
    protocol_version: int
    kernel_version: str
    features: dict[str, bool]


class ThinkResult(Result):
    content: str
    tokens: NotRequired[int]


class SpawnResult(TypedDict):
    success: NotRequired[bool]
    id: int
    name: str
    pid: int
    status: str
    restart_policy: str
    isolation: dict[str, Any]
    error: NotRequired[str]


class AgentInfo(TypedDict):
    id: int
    name: str
    pid: int
    state: str
    running: bool


ExecResult = TypedDict(  # functional form: "async" is a keyword
    "ExecResult",
    {
        "success": bool,
        "error": NotRequired[str],
        "stdout": str,
        "stderr": str,
        "exit_code": int,
        "async": NotRequired[bool],  # an accepted async submission: async, request_id, status
        "request_id": NotRequired[int],
        "status": NotRequired[str],
    },
)


class AsyncResultEntry(TypedDict):
    request_id: int
    opcode: int
    opcode_name: str
    payload: str  # JSON text of the synchronous reply


class AsyncPollResult(Result):
    count: int
    results: list[AsyncResultEntry]


class ReadResult(Result):
    content: str
    size: int


class WriteResult(Result):
    bytes_written: int


class RegisterResult(Result):
    agent_id: int
    name: str


class SendResult(Result):
    delivered_to: int


ReceivedMessage = TypedDict(  # functional form: "from" is a keyword
    "ReceivedMessage", {"from": int, "from_id": int, "from_name": str, "message": Any, "age_ms": int}
)


class RecvResult(Result):
    count: int
    messages: list[ReceivedMessage]


class BroadcastResult(Result):
    delivered_count: int


class StoreResult(Result):
    key: str


class FetchResult(Result):
    exists: bool
    value: Any
    scope: NotRequired[str]


class DeleteResult(Result):
    deleted: bool


class KeysResult(Result):
    keys: list[str]
    count: int


class HttpResult(Result):
    body: str
    status_code: int
    headers: NotRequired[dict[str, str]]


class SubscribeResult(Result):
    subscribed: list[str]


class Event(TypedDict):
    type: str
    data: Any
    source_agent_id: int
    timestamp: int


class EventsResult(Result):
    count: int
    events: list[Event]


class PermissionsResult(Result):
    permissions: dict[str, Any]


class MetricsResult(Result):
    metrics: dict[str, Any]


class AuditLogResult(Result):
    count: int
    entries: list[dict[str, Any]]


class RecordingStatus(Result):
    state: str
    recording: Any  # bool, or the exported JSON-array text with export=True (C2)
    entry_count: int


JsonDict = dict[str, Any]


# ---- helpers ---------------------------------------------------------------------------------------


def _decode_json(opcode: int, payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KernelError(f"{opcode_name(opcode)} reply is not JSON ({exc}): {payload[:200]!r}") from None


def _encode(payload: bytes | str | dict[str, Any] | list[Any] | None) -> bytes:
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload).encode("utf-8")


def _target(name: str | None, agent_id: int | None) -> dict[str, Any] | None:
    if name:
        return {"name": name}
    if agent_id:
        return {"id": agent_id}
    return None


def _content_or_raise(result: JsonDict) -> str:
    if result.get("success"):
        return result.get("content", "")
    raise OSError(result.get("error", "Read failed"))


def _ensure_list(opcode: int) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise KernelError(f"{opcode_name(opcode)} reply must be a JSON array, got {type(value).__name__}")
        return value

    return check


def _ensure_object(opcode: int, value: Any) -> JsonDict:
    if not isinstance(value, dict):
        raise KernelError(f"{opcode_name(opcode)} reply must be a JSON object, got {type(value).__name__}")
    return value


class ReplyBuffer:
    """Reply frames parsed from the bytes read so far.

    `stale` counts replies still owed to requests whose caller timed out; they are dropped on arrival,
    so the next caller gets its own reply (the kernel answers in request order, C9).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._ready: deque[tuple[int, int, bytes]] = deque()
        self.stale = 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        frames, pos, status = split_frames(self._buf, 0, _REPLY_LIMIT)
        del self._buf[:pos]
        if status == SPLIT_BAD_MAGIC:
            raise KernelError(f"reply frame with a bad magic: {bytes(self._buf[:17]).hex()}")
        for frame in frames:
            if self.stale:
                self.stale -= 1
            else:
                self._ready.append(frame)

    def pop(self) -> tuple[int, int, bytes] | None:
        return self._ready.popleft() if self._ready else None


def check_reply(opcode: int, frame: tuple[int, int, bytes]) -> Reply:
    reply = Reply(*frame)
    if reply.opcode != opcode:
        raise KernelError(
            f"reply opcode {opcode_name(reply.opcode)} does not match request opcode {opcode_name(opcode)}"
        )
    return reply


def _answers(path: str) -> socket.socket | None:
    """A socket connected to `path`, or None when nothing listens there (absent or stale socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    sock.settimeout(None)
    return sock


def embedded_socket_path() -> str:
    """The private socket of the in-process kernel, started on first use."""
    from clove_gym.runtime import embedded

    return embedded.socket_path()


def open_socket(socket_path: str | None = None) -> tuple[socket.socket, str]:
    """Connect by the resolution order: explicit path > $CLOVE_SOCKET > live /tmp/clove.sock > embedded.

    An explicit or $CLOVE_SOCKET path that does not answer is an error, never silently replaced.
    """
    path = socket_path or os.environ.get("CLOVE_SOCKET")
    if not path:
        sock = _answers(DEFAULT_SOCKET_PATH)
        if sock is not None:
            return sock, DEFAULT_SOCKET_PATH
        path = embedded_socket_path()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise KernelConnectionError(f"cannot connect to the kernel at {path}: {exc}") from None
    return sock, path


# ---- the shared method table --------------------------------------------------------------------------


class SyscallApi(ABC):
    """Every Clove SDK method, written once; subclasses implement `_roundtrip`.

    In `Client` the methods return their results; in `AsyncClient` they return awaitables of the same.
    """

    timeout: float | None

    @abstractmethod
    def _roundtrip(
        self, opcode: int, payload: bytes, timeout: float | None, decode: Callable[[Reply], T]
    ) -> T: ...

    def _const(self, value: T) -> T:
        """A result that needs no round trip (awaitable in the async client)."""
        return value

    def _wait(self, call_timeout: float | None, floor: float | None = None) -> float | None:
        if call_timeout is not None:
            return call_timeout
        if self.timeout is None or floor is None:
            return self.timeout
        return max(self.timeout, floor)

    def _json(
        self,
        opcode: int,
        payload: Any,
        call_timeout: float | None,
        post: Callable[[JsonDict], Any] | None = None,
        floor: float | None = None,
    ) -> Any:
        def decode(reply: Reply) -> Any:
            obj = _ensure_object(opcode, reply.json())
            return post(obj) if post else obj

        return self._roundtrip(opcode, _encode(payload), self._wait(call_timeout, floor), decode)

    # raw

    def call(
        self,
        opcode: int,
        payload: bytes | str | dict[str, Any] | None = b"",
        *,
        call_timeout: float | None = None,
    ) -> Reply:
        """Raw round trip: any opcode, payload as bytes/str/JSON-able; the reply frame."""
        return self._roundtrip(int(opcode), _encode(payload), self._wait(call_timeout), lambda r: r)

    # core

    def echo(self, message: str, *, call_timeout: float | None = None) -> str:
        return self._roundtrip(
            Op.NOOP,
            message.encode("utf-8"),
            self._wait(call_timeout),
            lambda r: r.payload.decode("utf-8", "replace"),
        )

    def noop(self, message: str, *, call_timeout: float | None = None) -> str:
        return self.echo(message, call_timeout=call_timeout)

    def hello(self, *, call_timeout: float | None = None) -> HelloResult:
        return self._json(Op.HELLO, {}, call_timeout)

    def exit(self, *, call_timeout: float | None = None) -> bool:
        """EXIT: the kernel answers "goodbye" and keeps the connection open."""
        return self._roundtrip(Op.EXIT, b"", self._wait(call_timeout), lambda r: True)

    def think(
        self,
        prompt: str,
        image: bytes | None = None,
        image_mime_type: str = "image/jpeg",
        system_instruction: str | None = None,
        thinking_level: str | None = None,
        temperature: float | None = None,
        model: str | None = None,
        *,
        call_timeout: float | None = None,
        **opts: Any,
    ) -> ThinkResult:
        """THINK through the kernel (synchronous); extra `opts` (e.g. max_tokens, tools) are passed on."""
        payload: dict[str, Any] = {"prompt": prompt, "async": False, **opts}
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
        return self._json(Op.THINK, payload, call_timeout, floor=THINK_TIMEOUT)

    def llm_report(self, tokens: int, success: bool = True, *, call_timeout: float | None = None) -> JsonDict:
        """LLM_REPORT: account tokens used outside the kernel against this agent's quota."""
        return self._json(Op.LLM_REPORT, {"tokens": tokens, "success": success}, call_timeout)

    # agents

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
        *,
        level: str | None = None,
        permissions: dict[str, Any] | None = None,
        log: str | None = None,
        cwd: str | None = None,
        call_timeout: float | None = None,
    ) -> SpawnResult:
        """Clove's SPAWN; our kernel also takes the agent's rights (`level`, `permissions` applied on top of
        it), a `log` file for its stdout/stderr and its `cwd`."""
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
        extras = {"level": level, "permissions": permissions, "log": log, "cwd": cwd}
        payload.update({k: v for k, v in extras.items() if v is not None})
        return self._json(Op.SPAWN, payload, call_timeout)

    def _lifecycle(
        self, opcode: Op, key: str, name: str | None, agent_id: int | None, call_timeout: float | None
    ) -> bool:
        target = _target(name, agent_id)
        if target is None:
            return self._const(False)
        return self._json(opcode, target, call_timeout, lambda r: bool(r.get(key, False)))

    def kill(
        self, name: str | None = None, agent_id: int | None = None, *, call_timeout: float | None = None
    ) -> bool:
        return self._lifecycle(Op.KILL, "killed", name, agent_id, call_timeout)

    def pause(
        self, name: str | None = None, agent_id: int | None = None, *, call_timeout: float | None = None
    ) -> bool:
        return self._lifecycle(Op.PAUSE, "success", name, agent_id, call_timeout)

    def resume(
        self, name: str | None = None, agent_id: int | None = None, *, call_timeout: float | None = None
    ) -> bool:
        return self._lifecycle(Op.RESUME, "success", name, agent_id, call_timeout)

    def list_agents(self, *, call_timeout: float | None = None) -> list[AgentInfo]:
        check = _ensure_list(Op.LIST)
        return self._roundtrip(Op.LIST, b"", self._wait(call_timeout), lambda r: check(r.json()))

    # exec and files

    def exec(
        self,
        command: str,
        cwd: str | None = None,
        timeout: int = 30,
        async_: bool = False,
        request_id: int | None = None,
        *,
        call_timeout: float | None = None,
    ) -> ExecResult:
        payload: dict[str, Any] = {"command": command, "timeout": timeout, "async": async_}
        if cwd:
            payload["cwd"] = cwd
        if request_id is not None:
            payload["request_id"] = request_id
        return self._json(Op.EXEC, payload, call_timeout, floor=timeout + _EXEC_MARGIN)

    def poll_async(self, max_results: int = 10, *, call_timeout: float | None = None) -> AsyncPollResult:
        return self._json(Op.ASYNC_POLL, {"max": max_results}, call_timeout)

    def read_file(self, path: str, *, call_timeout: float | None = None) -> ReadResult:
        return self._json(Op.READ, {"path": path}, call_timeout)

    def write_file(
        self, path: str, content: str, mode: str = "write", *, call_timeout: float | None = None
    ) -> WriteResult:
        return self._json(Op.WRITE, {"path": path, "content": content, "mode": mode}, call_timeout)

    def read(self, path: str, *, call_timeout: float | None = None) -> str:
        """The file's content; OSError with the kernel's reason when the read fails."""
        return self._json(Op.READ, {"path": path}, call_timeout, _content_or_raise)

    def write(
        self, path: str, content: str, mode: str = "write", *, call_timeout: float | None = None
    ) -> WriteResult:
        return self.write_file(path, content, mode, call_timeout=call_timeout)

    # IPC

    def register_name(self, name: str, *, call_timeout: float | None = None) -> RegisterResult:
        return self._json(Op.REGISTER, {"name": name}, call_timeout)

    def register(self, name: str, *, call_timeout: float | None = None) -> RegisterResult:
        return self.register_name(name, call_timeout=call_timeout)

    def send_message(
        self,
        message: Any,
        to: int | None = None,
        to_name: str | None = None,
        *,
        call_timeout: float | None = None,
    ) -> SendResult:
        payload: dict[str, Any] = {"message": message}
        if to is not None:
            payload["to"] = to
        if to_name is not None:
            payload["to_name"] = to_name
        return self._json(Op.SEND, payload, call_timeout)

    def recv_messages(self, max_messages: int = 10, *, call_timeout: float | None = None) -> RecvResult:
        return self._json(Op.RECV, {"max": max_messages}, call_timeout)

    def broadcast(
        self, message: Any, include_self: bool = False, *, call_timeout: float | None = None
    ) -> BroadcastResult:
        return self._json(Op.BROADCAST, {"message": message, "include_self": include_self}, call_timeout)

    # permissions

    def get_permissions(self, *, call_timeout: float | None = None) -> PermissionsResult:
        return self._json(Op.GET_PERMS, {}, call_timeout)

    def set_permissions(
        self,
        permissions: dict[str, Any] | None = None,
        level: str | None = None,
        agent_id: int | None = None,
        *,
        call_timeout: float | None = None,
    ) -> JsonDict:
        payload: dict[str, Any] = {}
        if permissions:
            payload["permissions"] = permissions
        if level:
            payload["level"] = level
        if agent_id is not None:
            payload["agent_id"] = agent_id
        return self._json(Op.SET_PERMS, payload, call_timeout)

    # state store

    def store(
        self,
        key: str,
        value: Any,
        scope: str = "global",
        ttl: int | None = None,
        *,
        call_timeout: float | None = None,
    ) -> StoreResult:
        payload: dict[str, Any] = {"key": key, "value": value, "scope": scope}
        if ttl is not None:
            payload["ttl"] = ttl
        return self._json(Op.STORE, payload, call_timeout)

    def fetch(self, key: str, *, call_timeout: float | None = None) -> FetchResult:
        return self._json(Op.FETCH, {"key": key}, call_timeout)

    def delete_key(self, key: str, *, call_timeout: float | None = None) -> DeleteResult:
        return self._json(Op.DELETE, {"key": key}, call_timeout)

    def list_keys(self, prefix: str = "", *, call_timeout: float | None = None) -> KeysResult:
        return self._json(Op.KEYS, {"prefix": prefix} if prefix else {}, call_timeout)

    # HTTP

    def http(
        self,
        url: str,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: str | None = None,
        timeout: int = 30,
        async_: bool = False,
        request_id: int | None = None,
        *,
        call_timeout: float | None = None,
    ) -> HttpResult:
        payload: dict[str, Any] = {"url": url, "method": method, "timeout": timeout, "async": async_}
        if headers:
            payload["headers"] = headers
        if body:
            payload["body"] = body
        if request_id is not None:
            payload["request_id"] = request_id
        return self._json(Op.HTTP, payload, call_timeout, floor=timeout + _EXEC_MARGIN)

    # events

    def subscribe(self, event_types: list[str], *, call_timeout: float | None = None) -> SubscribeResult:
        return self._json(Op.SUBSCRIBE, {"event_types": event_types}, call_timeout)

    def unsubscribe(self, event_types: list[str], *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.UNSUBSCRIBE, {"event_types": event_types}, call_timeout)

    def poll_events(self, max_events: int = 10, *, call_timeout: float | None = None) -> EventsResult:
        return self._json(Op.POLL_EVENTS, {"max": max_events}, call_timeout)

    def emit_event(
        self, event_type: str, data: dict[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> JsonDict:
        return self._json(Op.EMIT, {"event_type": event_type, "data": data or {}}, call_timeout)

    # worlds

    def world_create(
        self, name: str, config: dict[str, Any] | None = None, *, call_timeout: float | None = None
    ) -> JsonDict:
        return self._json(Op.WORLD_CREATE, {"name": name, "config": config or {}}, call_timeout)

    def world_destroy(
        self, world_id: str, force: bool = False, *, call_timeout: float | None = None
    ) -> JsonDict:
        return self._json(Op.WORLD_DESTROY, {"world_id": world_id, "force": force}, call_timeout)

    def world_list(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.WORLD_LIST, {}, call_timeout)

    def world_join(self, world_id: str, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.WORLD_JOIN, {"world_id": world_id}, call_timeout)

    def world_leave(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.WORLD_LEAVE, {}, call_timeout)

    def world_event(
        self,
        world_id: str,
        event_type: str,
        params: dict[str, Any] | None = None,
        *,
        call_timeout: float | None = None,
    ) -> JsonDict:
        payload = {"world_id": world_id, "event_type": event_type, "params": params or {}}
        return self._json(Op.WORLD_EVENT, payload, call_timeout)

    def world_state(self, world_id: str, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.WORLD_STATE, {"world_id": world_id}, call_timeout)

    def world_snapshot(self, world_id: str, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.WORLD_SNAPSHOT, {"world_id": world_id}, call_timeout)

    def world_restore(
        self, snapshot: dict[str, Any], new_world_id: str | None = None, *, call_timeout: float | None = None
    ) -> JsonDict:
        payload = {"snapshot": snapshot, "new_world_id": new_world_id or ""}
        return self._json(Op.WORLD_RESTORE, payload, call_timeout)

    # tunnel (answered "not supported" by our kernel; kept for API completeness)

    def tunnel_connect(
        self,
        relay_url: str,
        machine_id: str | None = None,
        token: str | None = None,
        *,
        call_timeout: float | None = None,
    ) -> JsonDict:
        payload: dict[str, Any] = {"relay_url": relay_url}
        if machine_id:
            payload["machine_id"] = machine_id
        if token:
            payload["token"] = token
        return self._json(Op.TUNNEL_CONNECT, payload, call_timeout)

    def tunnel_disconnect(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.TUNNEL_DISCONNECT, {}, call_timeout)

    def tunnel_status(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.TUNNEL_STATUS, {}, call_timeout)

    def tunnel_list_remotes(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.TUNNEL_LIST_REMOTES, {}, call_timeout)

    def tunnel_config(
        self,
        relay_url: str | None = None,
        machine_id: str | None = None,
        token: str | None = None,
        reconnect_interval: int | None = None,
        *,
        call_timeout: float | None = None,
    ) -> JsonDict:
        payload: dict[str, Any] = {}
        if relay_url:
            payload["relay_url"] = relay_url
        if machine_id:
            payload["machine_id"] = machine_id
        if token:
            payload["token"] = token
        if reconnect_interval is not None:
            payload["reconnect_interval"] = reconnect_interval
        return self._json(Op.TUNNEL_CONFIG, payload, call_timeout)

    # metrics

    def get_system_metrics(self, *, call_timeout: float | None = None) -> MetricsResult:
        return self._json(Op.METRICS_SYSTEM, {}, call_timeout)

    def get_agent_metrics(
        self, agent_id: int | None = None, *, call_timeout: float | None = None
    ) -> MetricsResult:
        return self._json(Op.METRICS_AGENT, {} if agent_id is None else {"agent_id": agent_id}, call_timeout)

    def get_all_agent_metrics(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.METRICS_ALL_AGENTS, {}, call_timeout)

    def get_cgroup_metrics(
        self, cgroup_path: str | None = None, *, call_timeout: float | None = None
    ) -> MetricsResult:
        return self._json(
            Op.METRICS_CGROUP, {"cgroup_path": cgroup_path} if cgroup_path else {}, call_timeout
        )

    # audit, recording, replay

    def get_audit_log(
        self,
        category: str | None = None,
        agent_id: int | None = None,
        since_id: int = 0,
        limit: int = 100,
        *,
        call_timeout: float | None = None,
    ) -> AuditLogResult:
        payload: dict[str, Any] = {"limit": limit}
        if category:
            payload["category"] = category
        if agent_id:
            payload["agent_id"] = agent_id
        if since_id:
            payload["since_id"] = since_id
        return self._json(Op.GET_AUDIT_LOG, payload, call_timeout)

    def set_audit_config(self, *, call_timeout: float | None = None, **config: Any) -> JsonDict:
        return self._json(Op.SET_AUDIT_CONFIG, config, call_timeout)

    def start_recording(
        self,
        include_think: bool = False,
        include_http: bool = False,
        include_exec: bool = False,
        filter_agents: list[int] | None = None,
        max_entries: int = 50000,
        *,
        call_timeout: float | None = None,
    ) -> JsonDict:
        payload: dict[str, Any] = {
            "include_think": include_think,
            "include_http": include_http,
            "include_exec": include_exec,
            "max_entries": max_entries,
        }
        if filter_agents:
            payload["filter_agents"] = filter_agents
        return self._json(Op.RECORD_START, payload, call_timeout)

    def stop_recording(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.RECORD_STOP, {}, call_timeout)

    def get_recording_status(
        self, export: bool = False, *, call_timeout: float | None = None
    ) -> RecordingStatus:
        return self._json(Op.RECORD_STATUS, {"export": export}, call_timeout)

    def start_replay(self, recording_data: str, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.REPLAY_START, {"recording": recording_data}, call_timeout)

    def get_replay_status(self, *, call_timeout: float | None = None) -> JsonDict:
        return self._json(Op.REPLAY_STATUS, {}, call_timeout)


# ---- the synchronous client ----------------------------------------------------------------------------


class Client(SyscallApi):
    """Blocking client over a Unix stream socket; safe to share between threads (one call at a time)."""

    def __init__(
        self, socket_path: str | None = None, *, timeout: float | None = DEFAULT_TIMEOUT, connect: bool = True
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._replies = ReplyBuffer()
        self._lock = threading.Lock()
        self._agent_id = 0
        if connect:
            self.connect()

    @property
    def agent_id(self) -> int:
        """The id the kernel stamps on this connection (valid after the first reply)."""
        return self._agent_id

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Connect (no-op when connected); raises KernelConnectionError when no kernel answers."""
        if self._sock is None:
            self._sock, self.socket_path = open_socket(self.socket_path)
            self._replies = ReplyBuffer()

    def close(self) -> None:
        with self._lock:
            self._drop()

    disconnect = close

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _roundtrip(
        self, opcode: int, payload: bytes, timeout: float | None, decode: Callable[[Reply], T]
    ) -> T:
        name = opcode_name(opcode)
        with self._lock:
            sock = self._sock
            if sock is None:
                raise KernelConnectionError(f"{name}: not connected to the kernel")
            deadline = None if timeout is None else time.monotonic() + timeout
            try:
                sock.settimeout(timeout)
                sock.sendall(encode_frame(self._agent_id, opcode, payload))
            except OSError as exc:  # a partly sent frame leaves the stream unusable
                self._drop()
                raise KernelConnectionError(f"{name}: could not send the request: {exc!r}") from None
            try:
                while (frame := self._replies.pop()) is None:
                    if deadline is not None:
                        sock.settimeout(max(deadline - time.monotonic(), 1e-3))
                    data = sock.recv(_RECV_CHUNK)
                    if not data:
                        raise KernelConnectionError(f"{name}: the kernel closed the connection")
                    self._replies.feed(data)
            except TimeoutError:
                self._replies.stale += 1
                raise KernelTimeout(f"{name}: no reply within {timeout} s") from None
            except KernelConnectionError:
                self._drop()
                raise
            except KernelError:
                self._drop()  # the stream can no longer be trusted
                raise
            except OSError as exc:
                self._drop()
                raise KernelConnectionError(f"{name}: connection to the kernel lost: {exc}") from None
            try:
                reply = check_reply(opcode, frame)
            except KernelError:
                self._drop()
                raise
            self._agent_id = reply.agent_id
        return decode(reply)
