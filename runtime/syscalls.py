"""Syscall handlers of the kernel (spec §2 with the compatibility profile C1-C14).

Every handler has the signature `(agent_id, opcode, payload, conn) -> dict | bytes | DEFERRED`; `conn` is
None when a recording is replayed. A handler validates every field it reads and answers a wrong type with
`success: false` and an error naming the field; it never raises on bad input.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clove_gym.runtime import hostcalls
from clove_gym.runtime.agents import (
    RESTART_POLICIES,
    ManagedAgent,
    PlainSpec,
    SpawnError,
    child_argv,
    child_env,
)
from clove_gym.runtime.audit import CATEGORIES
from clove_gym.runtime.dataplane import PLANE_OPS
from clove_gym.runtime.events import EVENT_TYPES, normalise_type
from clove_gym.runtime.hostcalls import BadRequest, field
from clove_gym.runtime.permissions import LEVELS, Permissions
from clove_gym.runtime.protocol import Op, opcode_name
from clove_gym.runtime.recording import Replayer
from clove_gym.runtime.sandbox import Limits, SpawnSpec
from clove_gym.runtime.sandbox import SpawnError as SandboxSpawnError
from clove_gym.runtime.supervisor import Escalate, Restart, RestartConfig

if TYPE_CHECKING:
    from clove_gym.runtime.kernel import Connection, Kernel

Handler = Callable[[int, int, bytes, "Connection | None"], Any]
MAX_POLL = 10_000
KILL_GRACE_S = 5.0  # from SIGTERM to SIGKILL on KILL


def parse_request(payload: bytes, empty_ok: bool = True) -> dict[str, Any]:
    """The JSON object in a request payload (raises BadRequest with the reason)."""
    if not payload.strip():
        if empty_ok:
            return {}
        raise BadRequest("invalid request: empty payload")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("invalid request: malformed JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("invalid request: payload must be a JSON object")
    return obj


def _count(req: dict[str, Any], key: str, default: int) -> int:
    value = field(req, key, int, default)
    return max(0, min(value, MAX_POLL))


def _fail(error: str, **extra: Any) -> dict[str, Any]:
    return {"success": False, "error": error, **extra}


class SyscallHandlers:
    """Mixed into Kernel: one method per opcode."""

    def _init_handlers(self: Kernel) -> None:
        h: dict[int, Handler] = {op: self._plane for op in PLANE_OPS}
        h.update(
            {
                Op.HELLO: self._hello,
                Op.EXIT: self._exit,
                Op.THINK: self._think,
                Op.EXEC: self._exec,
                Op.READ: self._read_file,
                Op.WRITE: self._write_file,
                Op.HTTP: self._http,
                Op.SPAWN: self._spawn,
                Op.KILL: self._kill,
                Op.LIST: self._list,
                Op.PAUSE: self._pause,
                Op.RESUME: self._pause,
                Op.GET_PERMS: self._get_perms,
                Op.SET_PERMS: self._set_perms,
                Op.SUBSCRIBE: self._subscribe,
                Op.UNSUBSCRIBE: self._unsubscribe,
                Op.POLL_EVENTS: self._poll_events,
                Op.EMIT: self._emit,
                Op.ASYNC_POLL: self._async_poll,
                Op.LLM_REPORT: self._llm_report,
                Op.GET_AUDIT_LOG: self._get_audit_log,
                Op.SET_AUDIT_CONFIG: self._set_audit_config,
                Op.RECORD_START: self._record_start,
                Op.RECORD_STOP: self._record_stop,
                Op.RECORD_STATUS: self._record_status,
                Op.REPLAY_START: self._replay_start,
                Op.REPLAY_STATUS: self._replay_status,
                Op.METRICS_SYSTEM: self._metrics,
                Op.METRICS_AGENT: self._metrics,
                Op.METRICS_ALL_AGENTS: self._metrics,
                Op.METRICS_CGROUP: self._metrics,
            }
        )
        for op in (
            Op.WORLD_CREATE,
            Op.WORLD_DESTROY,
            Op.WORLD_LIST,
            Op.WORLD_JOIN,
            Op.WORLD_LEAVE,
            Op.WORLD_EVENT,
            Op.WORLD_STATE,
            Op.WORLD_SNAPSHOT,
            Op.WORLD_RESTORE,
        ):
            h[op] = self._world_unavailable
        for op in (
            Op.TUNNEL_CONNECT,
            Op.TUNNEL_DISCONNECT,
            Op.TUNNEL_STATUS,
            Op.TUNNEL_LIST_REMOTES,
            Op.TUNNEL_CONFIG,
        ):
            h[op] = self._tunnel_unsupported
        self._handlers = h
        self._metrics_state: dict[str, Any] = {}

    # ---- fallbacks ----------------------------------------------------------------------------------
    def _unknown(self, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        return _fail(f"unknown opcode 0x{op:02X}")

    def _world_unavailable(
        self, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return _fail(f"{opcode_name(op)}: worlds are not available in this kernel yet")

    def _tunnel_unsupported(
        self, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return _fail(f"{opcode_name(op)} is not supported by clove-gym (no relay tunnels)")

    def _blocked(self: Kernel, aid: int, op: int, reason: str) -> None:
        """Every denial is a SYSCALL_BLOCKED event and a SECURITY audit entry."""
        data = {"agent_id": aid, "syscall": opcode_name(op), "reason": reason}
        self.emit("SYSCALL_BLOCKED", data)
        self.audit.log("SECURITY", "PERMISSION_DENIED", aid, data, success=False)

    # ---- core ---------------------------------------------------------------------------------------
    def _hello(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        from clove_gym.runtime.kernel import KERNEL_VERSION

        return {
            "success": True,
            "protocol_version": 1,
            "kernel_version": KERNEL_VERSION,
            "kernel": "clove-gym",
            "agent_id": aid,
            "features": {
                "llm_in_kernel": True,
                "sys_think_stub": False,
                "async_default_exec_http": True,
                "native": self.native,
                "worlds": False,
                "tunnel": False,
            },
        }

    def _exit(self, aid: int, op: int, payload: bytes, conn: Connection | None) -> bytes:
        return b"goodbye"

    # ---- data plane (when not answered in bulk) ------------------------------------------------------
    def _plane(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> bytes:
        resp = self.dp.handle(aid, op, payload)
        if op == Op.NOOP or resp.startswith(b'{"success": false'):
            if op == Op.SEND and b"mailbox full" in resp:
                self.emit(
                    "RESOURCE_WARNING",
                    {"agent_id": aid, "resource": "mailbox", "detail": json.loads(resp)["error"]},
                )
            return resp
        if op in (Op.SEND, Op.BROADCAST):
            result = json.loads(resp)
            data = {
                "from": aid,
                "to": result.get("delivered_to"),
                "delivered_count": result.get("delivered_count", 1),
            }
            if self.bus.has_subscribers("MESSAGE_RECEIVED"):
                self.emit("MESSAGE_RECEIVED", data, aid)
            self.audit.log("IPC", "MESSAGE_SENT" if op == Op.SEND else "BROADCAST", aid, data)
        elif op == Op.REGISTER:
            self.audit.log("IPC", "NAME_REGISTERED", aid, json.loads(resp))
        elif op in (Op.STORE, Op.DELETE):
            req = parse_request(payload)
            if op == Op.DELETE and b'"deleted": false' in resp:
                return resp
            action = "store" if op == Op.STORE else "delete"
            if op == Op.DELETE or req.get("scope", "global") not in ("agent", "session"):
                self.emit("STATE_CHANGED", {"key": req["key"], "action": action, "agent_id": aid}, aid)
            self.audit.log("STATE_STORE", action.upper(), aid, {"key": req["key"]})
        return resp

    # ---- host calls ---------------------------------------------------------------------------------
    def _read_file(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return self._file_call(aid, op, payload, hostcalls.read_file, {"content": "", "size": 0})

    def _write_file(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return self._file_call(aid, op, payload, hostcalls.write_file, {"bytes_written": 0})

    def _file_call(
        self: Kernel,
        aid: int,
        op: int,
        payload: bytes,
        call: Callable[[dict[str, Any], Permissions], dict[str, Any]],
        defaults: dict[str, Any],
    ) -> dict[str, Any]:
        """READ/WRITE: quick enough to run on the kernel thread; a denial is reported as blocked."""
        try:
            req = parse_request(payload, empty_ok=False)
        except BadRequest as exc:
            return _fail(str(exc), **defaults)
        result = call(req, self.perms(aid))
        if not result["success"] and result["error"].startswith("Permission denied"):
            self._blocked(aid, op, result["error"])
        return result

    def _exec(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> Any:
        return self._blocking_call(
            aid,
            op,
            payload,
            conn,
            hostcalls.check_exec,
            hostcalls.run_exec,
            {"stdout": "", "stderr": "", "exit_code": -1},
        )

    def _http(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> Any:
        return self._blocking_call(
            aid, op, payload, conn, hostcalls.check_http, hostcalls.run_http, {"body": "", "status_code": 0}
        )

    def _blocking_call(
        self: Kernel,
        aid: int,
        op: int,
        payload: bytes,
        conn: Connection | None,
        check: Callable[[dict[str, Any], Permissions], str | None],
        run: Callable[[dict[str, Any], Permissions], dict[str, Any]],
        defaults: dict[str, Any],
    ) -> Any:
        """EXEC/HTTP: validate and check permissions now, then run on a worker (sync or async, §2.4)."""
        try:
            req = parse_request(payload, empty_ok=False)
            is_async = field(req, "async", bool, True)
            request_id = self._request_id(req)
            denied = check(req, self.perms(aid))
        except BadRequest as exc:
            return _fail(str(exc), **defaults)
        if denied:
            if denied.startswith("Permission denied"):
                self._blocked(aid, op, denied)
            return _fail(denied, **defaults)
        if conn is None:
            return _fail("not replayable", **defaults)
        perms = self.perms(aid)
        if is_async:
            return self._start_async(conn, op, request_id, lambda done: done(run(req, perms)))
        return self.defer(conn, op, payload, lambda: run(req, perms))

    def _request_id(self: Kernel, req: dict[str, Any]) -> int:
        rid = field(req, "request_id", int, 0)
        if rid < 0 or rid >= 2**64:
            raise BadRequest("invalid request: 'request_id' must be a non-negative 64-bit integer")
        if rid:
            return rid
        self._request_counter += 1
        return self._request_counter

    def _start_async(
        self: Kernel,
        conn: Connection,
        op: int,
        request_id: int,
        start: Callable[[Callable[[Any], None]], None],
    ) -> dict[str, Any]:
        """Answer `accepted` now; the result lands in the connection's ASYNC_POLL queue."""

        def store(result: Any) -> None:
            if conn.closed:
                return
            conn.async_results.append(
                {
                    "request_id": request_id,
                    "opcode": op,
                    "opcode_name": opcode_name(op),
                    "payload": json.dumps(result),
                }
            )

        def done(result: Any) -> None:
            self.call_soon(lambda: store(result))

        def run() -> None:
            try:
                start(done)
            except Exception as exc:  # reported through ASYNC_POLL, never lost
                done(_fail(f"internal error: {type(exc).__name__}: {exc}"))

        self._pool.submit(run)
        return {"success": True, "async": True, "request_id": request_id, "status": "accepted"}

    def _async_poll(self, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        try:
            req = parse_request(payload)
            limit = _count(req, "max", 10)
        except BadRequest:
            req, limit = {}, 10
        results = []
        while conn is not None and conn.async_results and len(results) < limit:
            results.append(conn.async_results.popleft())
        return {"success": True, "count": len(results), "results": results}

    # ---- THINK / LLM ----------------------------------------------------------------------------------
    def _llm_service(self: Kernel) -> Any:
        if self.llm is None:
            from clove_gym.runtime.llm import LLMService

            self.llm = LLMService(base_url=os.environ.get("CLOVE_GEMINI_BASE_URL") or None)
        return self.llm

    def _think(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> Any:
        try:
            req = parse_request(payload)
            is_async = field(req, "async", bool, True)
            request_id = self._request_id(req)
            prompt = field(req, "prompt", str, "")
        except BadRequest as exc:
            return _fail(str(exc), content="")
        if not prompt:
            return _fail("prompt required", content="")
        perms = self.perms(aid)
        if not perms.check_llm():
            reason = "Permission denied: LLM quota exceeded or not allowed"
            self._blocked(aid, op, reason)
            return _fail(reason, content="")
        if conn is None:
            return _fail("not replayable", content="")
        service = self._llm_service()

        def account(result: dict[str, Any]) -> dict[str, Any]:
            if result.get("success"):
                perms.record_llm(int(result.get("tokens") or 0))
            return result

        def start(done: Callable[[Any], None]) -> None:
            if not service.submit(aid, req, lambda r: self.call_soon(lambda: done(account(r)))):
                done(_fail("LLM queue full for this agent (backpressure): retry later", content=""))

        if is_async:
            return self._start_async(conn, op, request_id, start)
        return self.defer_callback(conn, op, payload, start)

    def _llm_report(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            req = parse_request(payload)
            tokens = field(req, "tokens", int, 0)
        except BadRequest as exc:
            return _fail(str(exc))
        perms = self.perms(aid)
        allowed = perms.check_llm(max(tokens, 0))
        if tokens > 0:
            perms.record_llm(tokens)
        out: dict[str, Any] = {"success": allowed, "tokens": tokens, "quota_exceeded": not allowed}
        if not allowed:
            out["error"] = "LLM quota exceeded or permission denied"
            self._blocked(aid, op, out["error"])
        return out

    # ---- agents -------------------------------------------------------------------------------------
    def _spawn(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> Any:
        try:
            req = parse_request(payload, empty_ok=False)
            script = field(req, "script", str, "")
            name = field(req, "name", str, "")
            interpreter = field(req, "python", str)
            sandboxed = field(req, "sandboxed", bool, True)
            network = field(req, "network", bool, False)
            limits = field(req, "limits", dict, {})
            policy = field(req, "restart_policy", str, "never")
            max_restarts = field(req, "max_restarts", int, 5)
            window = field(req, "restart_window", int, 300)
            cwd = field(req, "cwd", str)
            log = field(req, "log", str)  # our extension: append the agent's stdout+stderr to this file
            limits = Limits.from_json(limits)
        except BadRequest as exc:
            return _fail(str(exc))
        except ValueError as exc:
            return _fail(f"invalid request: {exc}")
        if not script:
            return _fail("script path required")
        if not self.perms(aid).can_spawn:
            reason = "Permission denied: spawning agents is not allowed"
            self._blocked(aid, op, reason)
            return _fail(reason)
        try:
            granted = self._granted(
                aid, field(req, "level", str), field(req, "permissions", dict), merge=True
            )
        except BadRequest as exc:
            return _fail(str(exc))
        if isinstance(granted, str):
            self._blocked(aid, op, granted)
            return _fail(granted)
        try:
            backoff = {  # our extension: the supervisor's backoff, in seconds
                key: field(req, key, (int, float))
                for key in ("backoff_initial", "backoff_max")
                if req.get(key) is not None
            }
            restart = RestartConfig(
                policy=RESTART_POLICIES.get(policy, "never"),
                max_restarts=max_restarts,
                restart_window=window,
                **backoff,
            )
        except (BadRequest, ValueError) as exc:
            return _fail(str(exc) if isinstance(exc, BadRequest) else f"invalid request: {exc}")
        if conn is None:
            return _fail("not replayable")
        if name and any(a.name == name for a in self.agents.values()):
            return _fail(f"failed to spawn agent: name already in use: {name}")
        agent_id = self.new_id()
        name = name or f"agent_{agent_id}"
        argv = child_argv(script, interpreter, self.socket_path)
        env = child_env(dict(os.environ), self.socket_path, agent_id, name)

        def on_start(pid: int) -> None:  # worker thread: the agent may connect from now on
            self.call_soon(lambda: self.starting(pid, agent_id, granted or Permissions()))

        launch = self._launch_fn(agent_id, name, argv, env, cwd, sandboxed, network, limits, log, on_start)

        def spawned(proc: Any) -> dict[str, Any]:
            try:
                return register(proc)
            finally:
                self.start_ended(agent_id)
                self.launched()

        def register(proc: Any) -> dict[str, Any]:
            if isinstance(proc, Exception):
                return _fail(str(proc))
            agent = ManagedAgent(
                id=agent_id,
                name=name,
                script=script,
                proc=proc,
                parent_id=aid,
                restart_policy=RESTART_POLICIES.get(policy, "never"),
                max_restarts=max_restarts,
                restart_window=window,
                request=req,
                sandboxed=bool(proc.isolation.get("fully_isolated")),
            )
            agent.launch = launch
            self.agents[agent_id] = agent
            self.supervisor.started(agent_id, restart, time.monotonic())
            self.dp.add_agent(agent_id)
            self._perms[agent_id] = granted or Permissions()
            self._watch(agent, self._on_agent_exit)
            data = {"agent_id": agent_id, "name": name, "pid": proc.pid, "parent_id": aid}
            self.emit("AGENT_SPAWNED", data)
            self.audit.log("AGENT_LIFECYCLE", "AGENT_SPAWNED", agent_id, data, agent_name=name)
            return {
                "success": True,
                "id": agent_id,
                "agent_id": agent_id,
                "name": name,
                "pid": proc.pid,
                "status": "running",
                "restart_policy": agent.restart_policy,
                "isolation": proc.isolation,
            }

        self.launching += 1
        return self.defer(conn, op, payload, launch, spawned)

    def _launch_fn(
        self: Kernel,
        agent_id: int,
        name: str,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        sandboxed: bool,
        network: bool,
        limits: Limits,
        log: str | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> Callable[[], Any]:
        """The work a spawn does on a worker thread; returns the process, or the error as a value.
        Sandboxed agents go through the sandbox launcher (namespaces, cgroups, seccomp, zygote);
        `sandboxed: false` starts a plain child process."""
        if sandboxed:
            script = argv[1] if len(argv) > 2 else argv[0]
            spec: Any = SpawnSpec(
                agent_id=agent_id,
                name=name,
                argv=argv,
                env=env,
                cwd=os.path.abspath(cwd) if cwd else None,
                sandboxed=True,
                network=network,
                limits=limits,
                socket_path=self.socket_path,
                ro_paths=[os.path.dirname(os.path.abspath(script))],
            )
        else:
            spec = PlainSpec(agent_id=agent_id, name=name, argv=argv, env=env, cwd=cwd)

        def launch() -> Any:
            fd = None
            try:
                if log:
                    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
                    spec.stdout_fd = fd
                    if sandboxed:
                        spec.stderr_fd = fd
                if sandboxed:
                    with self._sandbox_lock:
                        return self.sandbox().spawn(spec, on_start)
                return self.launcher.spawn(spec)
            except (SpawnError, SandboxSpawnError) as exc:
                return SpawnError(f"failed to spawn agent: {exc}")
            except OSError as exc:
                return SpawnError(f"failed to spawn agent: cannot open log {log}: {exc.strerror}")
            except Exception as exc:  # returned, not raised: the kernel must see every launch end
                return SpawnError(f"failed to spawn agent: {type(exc).__name__}: {exc}")
            finally:
                if fd is not None:
                    os.close(fd)

        return launch

    def _find_agent(self: Kernel, req: dict[str, Any]) -> ManagedAgent | None:
        agent_id = field(req, "id", int, 0) or field(req, "agent_id", int, 0)
        name = field(req, "name", str, "")
        if agent_id:
            return self.agents.get(agent_id)
        return next((a for a in self.agents.values() if a.name == name), None) if name else None

    def _kill(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> Any:
        try:
            req = parse_request(payload, empty_ok=False)
            agent = self._find_agent(req)
        except BadRequest as exc:
            return {"killed": False, "agent_id": 0, "success": False, "error": str(exc)}
        if agent is None or agent.state == "STOPPING":
            return {
                "killed": False,
                "agent_id": field(req, "id", int, 0),
                "success": False,
                "error": "agent not found",
            }
        if conn is None:
            return _fail("not replayable")
        self.supervisor.cancel(agent.id)  # killed agents are never restarted
        if agent.state == "RESTARTING":  # waiting in its backoff: nothing runs
            self._forget_agent(agent)
            return {"killed": True, "agent_id": agent.id, "success": True, "exit_code": None}
        self._unwatch(agent)
        before, agent.state = agent.state, "STOPPING"

        def stop() -> int | Exception:
            try:
                return agent.proc.kill(KILL_GRACE_S)
            except Exception as exc:  # returned: killed() must still decide what the agent is now
                return exc

        def killed(status: int | Exception) -> dict[str, Any]:
            if isinstance(status, Exception):
                try:
                    exited = agent.proc.poll()
                except Exception:  # as broken as the kill: keep watching it
                    exited = None
                if exited is None:
                    return self._kill_failed(agent, before, status)
                status = exited  # it died and was released all the same
            self._forget_agent(agent)
            data = {"agent_id": agent.id, "name": agent.name, "killed_by": aid, "exit_code": status}
            self.emit("AGENT_EXITED", data)
            self.audit.log("AGENT_LIFECYCLE", "AGENT_KILLED", agent.id, data, agent_name=agent.name)
            return {"killed": True, "agent_id": agent.id, "success": True, "exit_code": status}

        try:
            agent.proc.terminate()  # at once, from here
        except Exception as exc:
            return self._kill_failed(agent, before, exc)
        if before == "PAUSED":  # frozen, it cannot act on SIGTERM: kill() SIGKILLs it at once
            return self.defer(conn, op, payload, stop, killed)
        # the usual KILL ends when the agent's exit is reported released, on this thread; SIGKILL at the
        # end of the grace period and anything unusual are kill()'s, on a worker
        return self.defer_until_readable(
            conn,
            op,
            payload,
            agent.proc.fileno(),
            agent.proc.poll,
            stop,
            killed,
            time.monotonic() + KILL_GRACE_S,
        )

    def _kill_failed(self: Kernel, agent: ManagedAgent, state: str, exc: Exception) -> dict[str, Any]:
        """A KILL that raised before the agent was released must not lose it: it goes back under watch
        (its exit, whenever it comes, is still noticed and reaped; a later KILL may try again), no longer
        supervised (it was asked to end, so it is not restarted)."""
        agent.state = state
        self._watch(agent, self._on_agent_exit)
        error = f"kill of agent {agent.id} ({agent.name}) failed: {type(exc).__name__}: {exc}"
        self.audit.log(
            "AGENT_LIFECYCLE",
            "AGENT_KILL_FAILED",
            agent.id,
            {"error": error},
            success=False,
            agent_name=agent.name,
        )
        return {
            "killed": False,
            "agent_id": agent.id,
            "success": False,
            "error": f"{error}; it is still watched",
        }

    def _forget_agent(self: Kernel, agent: ManagedAgent) -> None:
        self.agents.pop(agent.id, None)
        self.save_children()
        if agent.id not in self._by_id:
            self.dp.remove_agent(agent.id)
            self._perms.pop(agent.id, None)

    def _on_agent_exit(self: Kernel, agent: ManagedAgent) -> None:
        self._unwatch(agent)
        try:
            status = agent.proc.poll()
        except Exception:  # waited for below instead: the agent must not be lost
            self._internal_error(f"polling the exit of agent {agent.id} ({agent.name})")
            status = None
        if status is None:  # exited, but not yet reaped and released: wait for that off the loop
            proc = agent.proc
            self.defer(
                None,
                Op.SPAWN,
                b"",
                lambda: self._released(proc),
                lambda s: self._agent_exited(agent, proc, s),
            )
            return
        self._agent_exited(agent, agent.proc, status)

    def _released(self: Kernel, proc: Any) -> int | None:
        """On a worker: the exit status once the agent is released, or None to be asked again (after a
        pause when the wait raised, so a lasting fault is retried each second, not in a busy loop)."""
        try:
            return proc.wait(5.0)
        except Exception as exc:
            err = exc  # `exc` is unbound once the handler ends
            self.call_soon(lambda: self._internal_error(f"waiting for the release of pid {proc.pid}", err))
            time.sleep(1.0)
            return None

    def _agent_exited(self: Kernel, agent: ManagedAgent, proc: Any, status: int | None) -> None:
        if self.agents.get(agent.id) is not agent or agent.proc is not proc or agent.state == "STOPPING":
            return  # killed (or restarted) meanwhile: KILL reports it
        if status is None:  # never released within the wait: ask again rather than lose track of it
            self._on_agent_exit(agent)
            return
        data = {
            "agent_id": agent.id,
            "name": agent.name,
            "exit_code": status,
            "reason": "exited" if status == 0 else "failed",
        }
        self.emit("AGENT_EXITED", data)
        self.audit.log(
            "AGENT_LIFECYCLE", "AGENT_EXITED", agent.id, data, success=status == 0, agent_name=agent.name
        )
        self._supervise(agent, status)

    def _supervise(self: Kernel, agent: ManagedAgent, status: int) -> None:
        """Act on the supervisor's decision after an agent's death (issue 3 semantics)."""
        decision = self.supervisor.exited(agent.id, status, time.monotonic())
        if isinstance(decision, Restart):
            agent.state = "RESTARTING"
            data = {
                "agent_id": agent.id,
                "agent_name": agent.name,
                "restart_count": decision.attempt,
                "exit_code": status,
                "delay_ms": int(decision.delay * 1000),
            }
            self.emit("AGENT_RESTARTING", data)
            self.audit.log("AGENT_LIFECYCLE", "AGENT_RESTARTING", agent.id, data, agent_name=agent.name)
            return
        if isinstance(decision, Escalate):
            data = {
                "agent_id": agent.id,
                "agent_name": agent.name,
                "restart_count": decision.restarts_in_window,
                "exit_code": status,
            }
            self.emit("AGENT_ESCALATED", data)
            self.audit.log(
                "AGENT_LIFECYCLE", "AGENT_ESCALATED", agent.id, data, success=False, agent_name=agent.name
            )
        self._forget_agent(agent)

    def _restart(self: Kernel, agent_id: int) -> None:
        """Start a new incarnation of a supervised agent: same id, name and config."""
        agent = self.agents.get(agent_id)
        if agent is None or agent.state != "RESTARTING":
            return
        agent.state = "STARTING"

        def started(proc: Any) -> None:
            try:
                adopt(proc)
            finally:
                self.start_ended(agent.id)
                self.launched()

        def adopt(proc: Any) -> None:
            if agent.state != "STARTING":  # killed meanwhile
                if not isinstance(proc, Exception):
                    self._pool.submit(proc.kill, 1.0)
                return
            if isinstance(proc, Exception):
                self._supervise(agent, 127)
                return
            agent.proc = proc
            agent.state = "RUNNING"
            agent.restarts += 1
            self.supervisor.started(agent.id, RestartConfig(), time.monotonic())
            self._watch(agent, self._on_agent_exit)

        self.launching += 1
        self.defer(None, Op.SPAWN, b"", agent.launch, started)

    def _list(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> bytes:
        return json.dumps([a.entry() for a in self.agents.values()]).encode()

    def _pause(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        pausing = op == Op.PAUSE
        key = "paused" if pausing else "resumed"
        try:
            agent = self._find_agent(parse_request(payload, empty_ok=False))
        except BadRequest:
            return _fail("invalid request", **{key: False})
        want = "RUNNING" if pausing else "PAUSED"
        if agent is None or agent.state != want:
            state = "not found" if agent is None else f"in state {agent.state}"
            return _fail(f"agent {state}", **{key: False, "agent_id": agent.id if agent else 0})
        (agent.proc.pause if pausing else agent.proc.resume)()
        agent.state = "PAUSED" if pausing else "RUNNING"
        event = "AGENT_PAUSED" if pausing else "AGENT_RESUMED"
        data = {"agent_id": agent.id, "name": agent.name, f"{key}_by": aid}
        self.emit(event, data)
        self.audit.log("AGENT_LIFECYCLE", event, agent.id, data, agent_name=agent.name)
        return {"success": True, key: True, "agent_id": agent.id}

    # ---- permissions --------------------------------------------------------------------------------
    def _get_perms(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return {"success": True, "permissions": self.perms(aid).to_json()}

    def _set_perms(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            req = parse_request(payload, empty_ok=False)
            target = field(req, "agent_id", int, aid)
            level = field(req, "level", str)
            new = field(req, "permissions", dict)
        except BadRequest as exc:
            return _fail(str(exc))
        if level is None and new is None:
            return {"success": True, "agent_id": target}
        child = self.agents.get(target)
        if target != aid and not self.is_admin(aid) and (child is None or child.parent_id != aid):
            reason = "Permission denied: cannot modify other agent's permissions"
            self._blocked(aid, op, reason)
            return _fail(reason)
        try:
            granted = self._granted(aid, level, new, current=self.perms(target) if target == aid else None)
        except BadRequest as exc:
            return _fail(str(exc))
        if isinstance(granted, str):
            self._blocked(aid, op, granted)
            return _fail(granted)
        if not self.is_admin(target):  # an agent cannot escape its LLM quota by replacing its record
            old = self.perms(target)
            granted.tokens_used, granted.calls_made = old.tokens_used, old.calls_made
        self._perms[target] = granted
        self.audit.log("SECURITY", "PERMISSIONS_CHANGED", target, {"changed_by": aid, "level": level})
        return {"success": True, "agent_id": target}

    def _granted(
        self: Kernel,
        aid: int,
        level: str | None,
        new: dict[str, Any] | None,
        current: Permissions | None = None,
        merge: bool = False,
    ) -> Permissions | str | None:
        """The record a SET_PERMS or SPAWN asks for (None when it asks for nothing), or the denial text.
        SET_PERMS `permissions` replaces the whole record (spec §2.9); a SPAWN grant (`merge`) applies its
        `permissions` keys on top of its `level` (default standard). An admin may grant anything; anyone
        else at most the rights it holds itself."""
        if level is not None and level not in LEVELS:
            raise BadRequest(f"invalid request: unknown level '{level}' (one of {', '.join(LEVELS)})")
        try:
            if new is not None and merge:
                record = Permissions.for_level(level or "standard").apply(new)
            elif new is not None:
                record = Permissions.from_json(new)
            elif level is not None:
                record = Permissions.for_level(level)
            else:
                return None
        except ValueError as exc:
            raise BadRequest(f"invalid request: {exc}") from None
        if not self.is_admin(aid) and not record.is_within(current or self.perms(aid)):
            return "Permission denied: can only lower rights (needs an admin connection to raise them)"
        return record

    def _admin_only(self: Kernel, aid: int, op: int) -> dict[str, Any] | None:
        """Kernel-wide switches (recording, replay, audit config) are for admin connections only."""
        if self.is_admin(aid):
            return None
        reason = f"Permission denied: {opcode_name(op)} needs an admin connection"
        self._blocked(aid, op, reason)
        return _fail(reason)

    # ---- events -------------------------------------------------------------------------------------
    @staticmethod
    def _event_list(req: dict[str, Any]) -> list[str]:
        for key in ("event_types", "events"):
            if key in req and req[key] is not None:
                value = req[key]
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise BadRequest(f"invalid request: '{key}' must be a list of strings")
                return value
        single = field(req, "event", str)
        return [single] if single else []

    def _subscribe(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            types = self._event_list(parse_request(payload, empty_ok=False))
        except BadRequest as exc:
            return _fail(str(exc))
        if not types:
            return _fail("No events specified")
        self.bus.subscribe(aid, types)
        self._update_fast_ops()
        return {"success": True, "subscribed": types}

    def _unsubscribe(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            req = parse_request(payload, empty_ok=False)
            everything = field(req, "all", bool, False)
            types = None if everything else self._event_list(req)
        except BadRequest as exc:
            return _fail(str(exc))
        if types is not None and not types:
            return _fail("No events specified")
        dropped = self.bus.unsubscribe(aid, types)
        self._update_fast_ops()
        return {"success": True, "unsubscribed": dropped}

    def _poll_events(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            limit = _count(parse_request(payload), "max", 100)
        except BadRequest as exc:
            return _fail(str(exc))
        events = self.bus.poll(aid, limit)
        return {"success": True, "count": len(events), "events": events}

    def _emit(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        try:
            req = parse_request(payload, empty_ok=False)
            name = field(req, "event_type", str) or field(req, "event", str) or "CUSTOM"  # C12
        except BadRequest as exc:
            return _fail(str(exc))
        data = req.get("data")
        if name != "CUSTOM":
            data = (
                {**data, "custom_type": name}
                if isinstance(data, dict)
                else {"value": data, "custom_type": name}
            )
        delivered = len(self.bus.subscribers("CUSTOM"))
        self.emit("CUSTOM", data, aid)
        return {
            "success": True,
            "event": normalise_type(name) if name in EVENT_TYPES else name,
            "delivered_to": delivered,
        }

    # ---- audit, recording, replay ---------------------------------------------------------------------
    def _get_audit_log(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            req = parse_request(payload)
            category = field(req, "category", str)
            agent_id = field(req, "agent_id", int, 0)
            since_id = field(req, "since_id", int, 0)
            limit = _count(req, "limit", 100)
        except BadRequest as exc:
            return _fail(str(exc))
        if category is not None and category not in CATEGORIES:
            return _fail(f"invalid request: unknown category '{category}' (one of {', '.join(CATEGORIES)})")
        entries = self.audit.query(category, agent_id, since_id, limit)
        return {"success": True, "count": len(entries), "entries": entries}

    def _set_audit_config(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        denied = self._admin_only(aid, op)
        if denied:
            return denied
        try:
            req = parse_request(payload)
        except BadRequest:
            return _fail("Invalid JSON payload")
        try:
            self.audit.configure(req)
        except ValueError as exc:
            return _fail(f"invalid request: {exc}")
        self._update_fast_ops()
        self.audit.log("SECURITY", "AUDIT_CONFIG_CHANGED", aid, {"changed_by": aid, "new_config": req})
        return {"success": True, "config": dict(self.audit.config)}

    def _record_start(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        denied = self._admin_only(aid, op)
        if denied:
            return denied
        try:
            self.recorder.configure(parse_request(payload))
        except (BadRequest, ValueError) as exc:
            return _fail(
                str(exc) if isinstance(exc, BadRequest) else f"invalid request: {exc}", recording=False
            )
        if not self.recorder.start():
            return _fail("already recording", recording=True)
        self._update_fast_ops()
        self.audit.log("SYSCALL", "RECORDING_STARTED", aid)
        return {"success": True, "recording": True}

    def _record_stop(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        denied = self._admin_only(aid, op)
        if denied:
            return denied
        ok = self.recorder.stop()
        self._update_fast_ops()
        n = len(self.recorder.entries)
        if ok:
            self.audit.log("SYSCALL", "RECORDING_STOPPED", aid, {"entries": n})
        out = {"success": ok, "recording": False, "entries_recorded": n, "entry_count": n}
        return out if ok else {**out, "error": "not recording"}

    def _record_status(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        try:
            req = parse_request(payload)
            export = field(req, "export", bool, False)
            limit = _count(req, "limit", 100)
            since = field(req, "since_id", int, 0)
        except BadRequest as exc:
            return _fail(str(exc))
        entries = self.recorder.entries
        out: dict[str, Any] = {
            "success": True,
            "state": self.recorder.state,
            "recording": self.recorder.active,
            "paused": False,
            "entry_count": len(entries),
            "last_sequence_id": entries[-1]["sequence_id"] if entries else 0,
        }
        if export:  # C2: the export goes in `recording` as well as `recording_data`
            out["recording"] = out["recording_data"] = self.recorder.export()
        if "get_entries" in req:
            out["entries"] = [e for e in entries if e["sequence_id"] > since][:limit]
        return out

    def _replay_start(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        denied = self._admin_only(aid, op)
        if denied:
            return denied
        try:
            req = parse_request(payload)
            strict = field(req, "strict", bool, True)
        except BadRequest as exc:
            return _fail(str(exc))
        raw = req.get("recording", req.get("recording_data"))  # C3: both keys
        if raw is None:
            self.replayer.fail("No recording loaded")
            return _fail("No recording loaded")
        try:
            entries = Replayer.parse(raw)
        except ValueError as exc:
            self.replayer.fail(f"Failed to import recording data: {exc}")
            return _fail(f"Failed to import recording data: {exc}")
        live = sorted({e["agent_id"] for e in entries} & (set(self._by_id) | set(self.agents)) - {aid})
        if live:  # replay acts as the recorded ids: never as someone connected now
            reason = f"Permission denied: the recording acts as live agents {live}"
            self._blocked(aid, op, reason)
            self.replayer.fail(reason)
            return _fail(reason)
        for agent_id in {e["agent_id"] for e in entries} - {aid}:
            self.dp.add_agent(agent_id)
        self._next_id = max(self._next_id, max((e["agent_id"] for e in entries), default=0) + 1)
        self.replayer.load(entries, strict)  # C4: a new replay supersedes a running one
        self.audit.log("SYSCALL", "REPLAY_STARTED", aid, {"entries": len(entries), "strict": strict})
        return {"success": True, "total_entries": len(entries)}

    def _replay_status(
        self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None
    ) -> dict[str, Any]:
        return self.replayer.status()

    # ---- metrics ------------------------------------------------------------------------------------
    def _metrics(self: Kernel, aid: int, op: int, payload: bytes, conn: Connection | None) -> dict[str, Any]:
        from clove_gym.runtime import kernel_metrics

        try:
            req = parse_request(payload)
        except BadRequest as exc:
            return _fail(str(exc))
        try:
            return kernel_metrics.answer(self, aid, op, req)
        except BadRequest as exc:
            return _fail(str(exc))

    def uptime_s(self: Kernel) -> float:
        return time.monotonic() - self._started
