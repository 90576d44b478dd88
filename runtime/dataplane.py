"""The message data plane: IPC names, mailboxes and the state store (pure-Python twin of native/src/dataplane.c).

This class *is* the specification of the hot syscalls NOOP, REGISTER, SEND, RECV, BROADCAST, STORE, FETCH,
DELETE and KEYS (../shared/spec/protocol.md §2.1, §2.6, §2.7, with C6, C11 and C14). The C type
`clove_gym.native._native.DataPlane` has the same constructor, methods and results, byte for byte, for
every input; tests/native drive both with the same frames and compare.

Values crossing the plane (message bodies, stored values) are kept as canonical JSON text, i.e. exactly
`json.dumps(value)` with the default settings, and spliced into responses without re-encoding.

Deliberate departures from the reference, all bounded-resource fixes (C14):
  * mailboxes hold at most `mailbox_limit` messages; SEND to a full mailbox fails, BROADCAST skips it;
  * SEND to a numeric id that is neither a live connection nor a known spawned agent fails;
  * the store holds at most `store_limit` entries;
  * a connection's names and mailbox are released when it goes away (`remove_agent`, C6).
"""

from __future__ import annotations

import json
import struct
import time
from collections import deque
from typing import Any, Protocol

from clove_gym.runtime.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    SPLIT_BAD_MAGIC,
    SPLIT_OK,
    SPLIT_OVERSIZE,
    Op,
)

# process() status codes (SPLIT_* values are shared with protocol.split_frames)
PROCESS_SLOW = 3  # the frame at `pos` is not one process() may handle: the caller dispatches it

FAST_OPS = (Op.NOOP, Op.SEND, Op.RECV, Op.BROADCAST, Op.STORE, Op.FETCH)
PLANE_OPS = frozenset((*FAST_OPS, Op.REGISTER, Op.DELETE, Op.KEYS))
SCOPES = ("global", "agent", "session")
DEFAULT_MAILBOX_LIMIT = 10_000
DEFAULT_STORE_LIMIT = 100_000
RECV_MAX_LIMIT = 10_000  # one RECV returns at most this many messages whatever `max` says

# trace record kinds / results (runtime/trace/FORMAT.md)
_K_SYSCALL, _K_ENQ, _K_DEQ = 0, 2, 3


class TraceSink(Protocol):
    def record(
        self,
        kind: int,
        opcode: int,
        agent_id: int,
        t_ns: int,
        peer_id: int = 0,
        aux: int = 0,
        service_ns: int = 0,
        queue_ns: int = 0,
        world_id: int = 0,
        result: int = 0,
        req: bytes = b"",
        resp: bytes = b"",
    ) -> None: ...


class RequestError(ValueError):
    """A request the plane refuses; str() is the `error` text."""


def _dumps(value: Any) -> str:
    return json.dumps(value)


def _error(text: str) -> bytes:
    return json.dumps({"success": False, "error": text}).encode()


def _parse_object(payload: bytes, empty_ok: bool) -> dict[str, Any]:
    """The payload as a JSON object. Invalid UTF-8 or JSON, or a non-object, raise RequestError."""
    if not payload and empty_ok:
        return {}
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RequestError("invalid request: malformed JSON") from None
    if not isinstance(obj, dict):
        raise RequestError("invalid request: payload must be a JSON object")
    return obj


def _int_field(obj: dict[str, Any], key: str, default: int) -> int:
    value = obj.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"invalid request: '{key}' must be an integer")
    return value


def _str_field(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(f"invalid request: '{key}' must be a string")
    return value


class DataPlane:
    """Names, mailboxes and the key-value store of one kernel."""

    def __init__(
        self, mailbox_limit: int = DEFAULT_MAILBOX_LIMIT, store_limit: int = DEFAULT_STORE_LIMIT
    ) -> None:
        if mailbox_limit < 1 or store_limit < 1:
            raise ValueError("mailbox_limit and store_limit must be >= 1")
        self.mailbox_limit = mailbox_limit
        self.store_limit = store_limit
        self._agents: set[int] = set()
        self._names: dict[str, int] = {}  # name -> agent id
        self._sender_name: dict[int, str] = {}  # agent id -> most recently registered name
        self._mailboxes: dict[
            int, deque[tuple[int, str, str, int, int]]
        ] = {}  # (from, name, text, t_ns, seq)
        # internal key -> (value text, scope, owner id, expiry ns or 0 for none)
        self._store: dict[str, tuple[str, str, int, int]] = {}
        self._stats: dict[int, list[int]] = {}  # agent id -> [syscalls, messages_sent, messages_recv]
        self._msg_seq = 0
        self._fast: frozenset[int] = frozenset(FAST_OPS)
        self._trace: TraceSink | None = None

    # ---- configuration -------------------------------------------------------------------------
    def set_trace(self, sink: TraceSink | None) -> None:
        """Where records of frames handled by process() and of message enqueue/dequeue go (None = off)."""
        self._trace = sink

    def set_fast_ops(self, opcodes: Any) -> None:
        """Which opcodes process() handles itself; any subset of FAST_OPS (others raise ValueError)."""
        ops = frozenset(int(op) for op in opcodes)
        if not ops <= frozenset(int(op) for op in FAST_OPS):
            raise ValueError(f"not fast-path opcodes: {sorted(ops - frozenset(FAST_OPS))}")
        self._fast = ops

    # ---- membership (C6) -----------------------------------------------------------------------
    def add_agent(self, agent_id: int) -> None:
        """Make `agent_id` a valid SEND target (a live connection or a spawned agent)."""
        self._agents.add(agent_id)

    def remove_agent(self, agent_id: int) -> None:
        """Forget a connection: its names, its mailbox and its counters. Agent-scoped keys stay."""
        self._agents.discard(agent_id)
        for name in [n for n, owner in self._names.items() if owner == agent_id]:
            del self._names[name]
        self._sender_name.pop(agent_id, None)
        self._mailboxes.pop(agent_id, None)
        self._stats.pop(agent_id, None)

    def has_agent(self, agent_id: int) -> bool:
        return agent_id in self._agents

    def names(self) -> dict[str, int]:
        """Registered name -> agent id."""
        return dict(self._names)

    def mailbox_len(self, agent_id: int) -> int:
        box = self._mailboxes.get(agent_id)
        return len(box) if box else 0

    def stats(self, agent_id: int) -> dict[str, int]:
        """Counters of frames this plane answered for the agent."""
        s = self._stats.get(agent_id, [0, 0, 0])
        return {"syscalls": s[0], "messages_sent": s[1], "messages_recv": s[2]}

    def store_size(self) -> int:
        return len(self._store)

    # ---- the frame loop ------------------------------------------------------------------------
    def process(
        self,
        agent_id: int,
        buf: bytes | bytearray | memoryview,
        pos: int = 0,
        now_ns: int = 0,
        recv_ns: int = 0,
    ) -> tuple[bytes, int, int]:
        """Answer the complete fast-path frames in buf[pos:], in order.

        Returns (out, pos, status): `out` is the response frames' bytes, `pos` where it stopped, and
        status SPLIT_OK (end of buffer or incomplete frame), SPLIT_BAD_MAGIC, SPLIT_OVERSIZE, or
        PROCESS_SLOW (the frame at pos is for the caller). Every answered frame is traced as a SYSCALL
        record. `now_ns` fixes the clock (tests); 0 reads time.monotonic_ns(). `recv_ns` is when the
        bytes arrived, for queue_ns (0 = unknown).
        """
        if not 0 <= agent_id <= 0xFFFFFFFF:  # the response header could not carry it: refuse before acting
            raise struct.error("'I' format requires 0 <= number <= 4294967295")
        out = bytearray()
        end = len(buf)
        fast = self._fast
        while end - pos >= HEADER_SIZE:
            magic, _hdr_id, opcode, size = HEADER.unpack_from(buf, pos)
            if magic != MAGIC:
                return bytes(out), pos, SPLIT_BAD_MAGIC
            if size > MAX_PAYLOAD:
                return bytes(out), pos, SPLIT_OVERSIZE
            stop = pos + HEADER_SIZE + size
            if stop > end:
                break
            if opcode not in fast:
                return bytes(out), pos, PROCESS_SLOW
            payload = bytes(buf[pos + HEADER_SIZE : stop])
            t0 = now_ns or time.monotonic_ns()
            resp = self.handle(agent_id, opcode, payload, now_ns)
            if self._trace is not None:
                t1 = now_ns or time.monotonic_ns()
                self._trace.record(
                    _K_SYSCALL,
                    opcode,
                    agent_id,
                    t0,
                    service_ns=min(t1 - t0, 0xFFFFFFFF),
                    queue_ns=min(max(t0 - recv_ns, 0), 0xFFFFFFFF) if recv_ns else 0,
                    result=0 if opcode == Op.NOOP or not resp.startswith(b'{"success": false') else 1,
                    req=payload,
                    resp=resp,
                )
            out += HEADER.pack(MAGIC, agent_id, opcode, len(resp))
            out += resp
            pos = stop
        return bytes(out), pos, SPLIT_OK

    # ---- one request ---------------------------------------------------------------------------
    def handle(self, agent_id: int, opcode: int, payload: bytes, now_ns: int = 0) -> bytes:
        """The response payload for one plane request (opcode in PLANE_OPS; others raise ValueError)."""
        if opcode not in PLANE_OPS:
            raise ValueError(f"opcode 0x{opcode:02X} is not a data-plane opcode")
        stats = self._stats.get(agent_id)
        if stats is None:
            stats = self._stats[agent_id] = [0, 0, 0]
        stats[0] += 1
        if opcode == Op.NOOP:
            return bytes(payload)
        now = now_ns or time.monotonic_ns()
        try:
            obj = _parse_object(payload, empty_ok=opcode == Op.KEYS)
            if opcode == Op.SEND:
                return self._send(agent_id, obj, now, stats)
            if opcode == Op.RECV:
                return self._recv(agent_id, obj, now, stats)
            if opcode == Op.BROADCAST:
                return self._broadcast(agent_id, obj, now, stats)
            if opcode == Op.REGISTER:
                return self._register(agent_id, obj)
            if opcode == Op.STORE:
                return self._store_op(agent_id, obj, now)
            if opcode == Op.FETCH:
                return self._fetch(agent_id, obj, now)
            if opcode == Op.DELETE:
                return self._delete(agent_id, obj)
            return self._keys(agent_id, obj, now)
        except RequestError as exc:
            return _error(str(exc))

    # ---- IPC -----------------------------------------------------------------------------------
    def _register(self, agent_id: int, obj: dict[str, Any]) -> bytes:
        name = _str_field(obj, "name")
        if not name:
            raise RequestError("name required")
        owner = self._names.get(name)
        if owner is not None and owner != agent_id:
            raise RequestError("name already registered")
        self._names[name] = agent_id
        self._sender_name[agent_id] = name
        return f'{{"success": true, "agent_id": {agent_id}, "name": {_dumps(name)}}}'.encode()

    def _enqueue(self, sender: int, target: int, text: str, now: int, opcode: int) -> bool:
        box = self._mailboxes.get(target)
        if box is None:
            box = self._mailboxes[target] = deque()
        if len(box) >= self.mailbox_limit:
            return False
        self._msg_seq += 1
        box.append((sender, self._sender_name.get(sender, ""), text, now, self._msg_seq))
        if self._trace is not None:
            data = text.encode()
            self._trace.record(_K_ENQ, opcode, sender, now, peer_id=target, aux=self._msg_seq, req=data)
        return True

    def _send(self, agent_id: int, obj: dict[str, Any], now: int, stats: list[int]) -> bytes:
        to = _int_field(obj, "to", 0)
        to_name = _str_field(obj, "to_name")
        text = _dumps(obj.get("message", {}))
        if to < 0 or to > 0xFFFFFFFF:
            raise RequestError("invalid request: 'to' out of range")
        if to == 0:
            if not to_name:
                raise RequestError("target agent required (to or to_name)")
            target = self._names.get(to_name)
            if target is None:
                raise RequestError(f"target agent not found: {to_name}")
        else:
            target = to
            if target not in self._agents:
                raise RequestError(f"target agent not found: {target}")
        if not self._enqueue(agent_id, target, text, now, Op.SEND):
            raise RequestError(f"mailbox full: agent {target}")
        stats[1] += 1
        return f'{{"success": true, "delivered_to": {target}}}'.encode()

    def _recv(self, agent_id: int, obj: dict[str, Any], now: int, stats: list[int]) -> bytes:
        limit = min(_int_field(obj, "max", 10), RECV_MAX_LIMIT)
        box = self._mailboxes.get(agent_id)
        parts: list[str] = []
        while box and len(parts) < limit:
            sender, name, text, t_ns, seq = box.popleft()
            age_ms = max(now - t_ns, 0) // 1_000_000
            parts.append(
                f'{{"from": {sender}, "from_name": {_dumps(name)}, "message": {text}, '
                f'"age_ms": {age_ms}, "from_id": {sender}}}'
            )
            if self._trace is not None:
                self._trace.record(_K_DEQ, Op.RECV, agent_id, now, peer_id=sender, aux=seq, req=text.encode())
        stats[2] += len(parts)
        return f'{{"success": true, "count": {len(parts)}, "messages": [{", ".join(parts)}]}}'.encode()

    def _broadcast(self, agent_id: int, obj: dict[str, Any], now: int, stats: list[int]) -> bytes:
        include_self = obj.get("include_self", False)
        if not isinstance(include_self, bool):
            raise RequestError("invalid request: 'include_self' must be a boolean")
        text = _dumps(obj.get("message", {}))
        delivered = 0
        for target in list(self._sender_name):  # registered ids, in order of first registration
            if target == agent_id and not include_self:
                continue
            if self._enqueue(agent_id, target, text, now, Op.BROADCAST):
                delivered += 1
        stats[1] += delivered
        return f'{{"success": true, "delivered_count": {delivered}}}'.encode()

    # ---- state store ---------------------------------------------------------------------------
    def _live(self, key: str, now: int) -> tuple[str, str, int, int] | None:
        entry = self._store.get(key)
        if entry is not None and entry[3] and entry[3] <= now:
            del self._store[key]
            return None
        return entry

    def _store_op(self, agent_id: int, obj: dict[str, Any], now: int) -> bytes:
        key = _str_field(obj, "key")
        if not key:
            raise RequestError("key is required")
        scope = obj.get("scope", "global")
        if scope not in SCOPES:
            scope = "global"
        ttl = obj.get("ttl")
        expiry = 0
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl != ttl:
                raise RequestError("invalid request: 'ttl' must be a number")
            seconds = int(max(min(ttl, 1e9), -1e9))
            expiry = now + seconds * 1_000_000_000 if seconds > 0 else 1  # <= 0: expired at once
        internal = f"agent:{agent_id}:{key}" if scope == "agent" else key
        if internal not in self._store and len(self._store) >= self.store_limit:
            raise RequestError("state store full")
        self._store[internal] = (_dumps(obj.get("value")), scope, agent_id, expiry)
        return f'{{"success": true, "key": {_dumps(key)}}}'.encode()

    def _candidates(self, agent_id: int, key: str) -> tuple[str, str]:
        return key, f"agent:{agent_id}:{key}"

    def _fetch(self, agent_id: int, obj: dict[str, Any], now: int) -> bytes:
        key = _str_field(obj, "key")
        if not key:
            raise RequestError("key is required")
        for internal in self._candidates(agent_id, key):
            entry = self._live(internal, now)
            if entry is not None and (entry[1] != "agent" or entry[2] == agent_id):
                return (
                    f'{{"success": true, "exists": true, "value": {entry[0]}, "scope": "{entry[1]}"}}'
                ).encode()
        return b'{"success": true, "exists": false, "value": null}'

    def _delete(self, agent_id: int, obj: dict[str, Any]) -> bytes:
        key = _str_field(obj, "key")
        if not key:
            raise RequestError("key is required")
        for internal in self._candidates(agent_id, key):
            entry = self._store.get(internal)
            if entry is not None and (entry[1] == "global" or entry[2] == agent_id):
                del self._store[internal]
                return b'{"success": true, "deleted": true}'
        return b'{"success": true, "deleted": false}'

    def _keys(self, agent_id: int, obj: dict[str, Any], now: int) -> bytes:
        prefix = _str_field(obj, "prefix") or ""
        keys: list[str] = []
        for internal in list(self._store):
            entry = self._live(internal, now)
            if entry is None or (entry[1] == "agent" and entry[2] != agent_id):
                continue
            if not internal.startswith(prefix):
                continue
            shown = internal
            if internal.startswith("agent:"):
                second = internal.find(":", 6)
                if second != -1:
                    shown = internal[second + 1 :]
            keys.append(_dumps(shown))
        return f'{{"success": true, "keys": [{", ".join(keys)}], "count": {len(keys)}}}'.encode()
