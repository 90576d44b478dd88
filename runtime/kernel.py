"""The clove-gym kernel: a Unix-socket server speaking the Clove wire protocol.

One thread owns all kernel state and runs an epoll loop over the listening socket, the connections, the
spawned agents' pidfds and a wake-up pipe. Hot data-plane frames (NOOP, SEND, RECV, BROADCAST, STORE, FETCH)
are answered in bulk by the data plane (C when built, else its Python twin); the other syscalls are
dispatched one by one. Blocking work (EXEC, HTTP, THINK, process control) runs on worker threads; while it
runs, that connection's later frames wait, so responses stay FIFO per connection (C9) and no other client
is held up.

Bounded memory per client: a connection whose unsent responses pass OUT_HIGH, or whose unprocessed input
passes IN_HIGH while it waits on blocking work, is no longer read until it drains (backpressure, not
buffering); oversized frames are drained and answered with an error; bad magic closes the connection.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import selectors
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clove_gym import native
from clove_gym.runtime import dataplane as py_dataplane
from clove_gym.runtime import fdlimit, sched_backend
from clove_gym.runtime.agents import ManagedAgent, PlainLauncher
from clove_gym.runtime.audit import AuditLog
from clove_gym.runtime.childtable import ChildTable
from clove_gym.runtime.events import EventBus
from clove_gym.runtime.permissions import Permissions
from clove_gym.runtime.protocol import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    SPLIT_BAD_MAGIC,
    SPLIT_OK,
    SPLIT_OVERSIZE,
    Op,
)
from clove_gym.runtime.recording import Recorder, Replayer
from clove_gym.runtime.supervisor import Supervisor
from clove_gym.runtime.syscalls import SyscallHandlers
from clove_gym.runtime.trace.format import EVENT_CODES

DEFAULT_SOCKET = "/tmp/clove.sock"
KERNEL_VERSION = "0.1.0"
RECV_CHUNK = 256 * 1024
OUT_HIGH = 4 << 20  # stop reading a client whose unsent responses exceed this
OUT_LOW = 1 << 20  # ... and resume below this
IN_HIGH = 2 << 20  # stop reading a busy client once this much input waits
ASYNC_RESULTS_LIMIT = 10_000
MAX_CONNECTIONS = 4096
TICK_S = 0.1
ACCEPT_RETRY_S = 0.1  # how long the listener is set aside when an accept finds no descriptor
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
IDENTIFY_WAIT_NS = 10_000_000_000  # longest a new connection waits for in-flight spawns to name it
_PEERCRED = struct.Struct("3i")


class _Deferred:
    """Marker returned by a handler whose response comes later from a worker."""


DEFERRED = _Deferred()


def _internal_error_response(exc: BaseException) -> dict[str, Any]:
    return {"success": False, "error": f"internal error: {type(exc).__name__}: {exc}"}


def _respond(then: Callable[[Any], Any] | None, value: Any) -> Any:
    """The response `then` makes of `value` (`value` itself without `then`); a failing `then` is an
    internal error for the client, not for the loop."""
    try:
        return then(value) if then is not None else value
    except Exception as exc:
        return _internal_error_response(exc)


class Connection:
    __slots__ = (
        "sock",
        "fd",
        "id",
        "peer_pid",
        "inbuf",
        "outbuf",
        "busy",
        "discard",
        "discard_op",
        "closed",
        "mask",
        "recv_ns",
        "async_results",
        "throttled",
        "admin",
        "accepted_ns",
    )

    def __init__(self, sock: socket.socket, agent_id: int, peer_pid: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.id = agent_id
        self.peer_pid = peer_pid
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.busy = False
        self.discard = 0  # payload bytes still to drop after an oversized header
        self.discard_op = 0
        self.closed = False
        self.mask = selectors.EVENT_READ
        self.recv_ns = 0
        self.async_results: deque[dict[str, Any]] = deque(maxlen=ASYNC_RESULTS_LIMIT)
        self.throttled = False
        self.admin = False
        self.accepted_ns = time.monotonic_ns()


class KernelError(RuntimeError):
    """The kernel could not start (socket in use, bad path, ...)."""


def socket_is_live(path: str, timeout: float = 0.5) -> bool:
    """Whether a kernel answers on `path` (a connect that succeeds)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


class Kernel(SyscallHandlers):
    """An in-process kernel. `start()` runs it on a background thread; `serve_forever()` on this one."""

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        trace_path: str | None = None,
        trace_cap: int = 256,
        audit_path: str | None = None,
        llm: Any = None,
        launcher: Any = None,
        use_native: bool = True,
        workers: int = 8,
        child_table_dir: Path | None = None,
        scheduler: str | None = None,
    ) -> None:
        """`scheduler`: the THINK queue's decision backend spec (runtime/sched_backend.py; None =
        $CLOVE_SCHEDULER, else software); a non-software one starts here, so it fails the kernel's start."""
        fdlimit.raise_soft()  # a few descriptors per agent: see fdlimit
        self._own_llm = llm is None
        if llm is not None and scheduler is not None:
            raise ValueError("Kernel: give scheduler= to the LLMService passed as llm=, not to the Kernel")
        if llm is None and sched_backend.spec_name(scheduler) != sched_backend.SOFTWARE:
            from clove_gym.runtime.llm import LLMService

            llm = LLMService(base_url=os.environ.get("CLOVE_GEMINI_BASE_URL") or None, scheduler=scheduler)
        self._private_dir: str | None = None
        if socket_path is None:
            self._private_dir = tempfile.mkdtemp(prefix="clove-gym-")
            os.chmod(self._private_dir, 0o711)  # sandboxed agents run as other uids: traverse, not list
            socket_path = os.path.join(self._private_dir, "kernel.sock")
        self.socket_path = socket_path
        nat = native.load() if use_native else None
        c_plane = getattr(nat, "DataPlane", None)
        self.native = c_plane is not None
        self.dp = c_plane() if c_plane is not None else py_dataplane.DataPlane()
        self.trace: Any = None
        if trace_path:
            from clove_gym.runtime.trace.writer import open_writer

            self.trace = (
                open_writer(trace_path, cap=trace_cap) if use_native else _py_writer(trace_path, trace_cap)
            )
            self.dp.set_trace(self.trace)
        self.trace_path = trace_path
        self.audit = AuditLog(audit_path)
        self.bus = EventBus()
        self.recorder = Recorder()
        self.replayer = Replayer()
        self.llm = llm
        self.launcher = launcher or PlainLauncher()
        self.sandbox_launcher: Any = None
        self._sandbox_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clove-kernel")
        self._sel = selectors.DefaultSelector()
        self._rbuf = bytearray(RECV_CHUNK)  # _read's, on the kernel thread only
        self._rview = memoryview(self._rbuf)
        self._conns: dict[int, Connection] = {}  # fd -> connection
        self._by_id: dict[int, Connection] = {}
        self._perms: dict[int, Permissions] = {}
        self.agents: dict[int, ManagedAgent] = {}
        self.supervisor = Supervisor()
        self.children = ChildTable(child_table_dir)
        self._saved_rows: set[tuple[int, str, int]] = set()  # (id, name, pid) as the table on disk has them
        self._children_stale = False  # rows removed since: rewritten at the end of the loop iteration
        self._next_id = 1
        self.launching = 0  # spawns and restarts in flight
        self._unidentified: list[Connection] = []
        self._starting: dict[int, int] = {}  # init pid of a spawn in flight -> its agent id
        self._request_counter = 0
        self._completions: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        # defer_until_readable's waits: our dup of the fd -> (deadline, hand the work to a worker)
        self._fd_waits: dict[int, tuple[float, Callable[[], None]]] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._stop_requested = False
        self._stopped = threading.Event()
        self._loop_ident = 0  # the thread running the loop, once it runs
        self._started = time.monotonic()
        self._last_tick = 0.0
        self.stats = {
            "connections": 0,
            "syscalls_slow": 0,
            "protocol_errors": 0,
            "throttled": 0,
            "internal_errors": 0,
            "accept_paused": 0,  # times the listener was set aside, out of descriptors or memory
        }
        self._accept_paused_until: float | None = None
        self._accept_warned = False
        self._init_handlers()

    # ---- lifecycle -----------------------------------------------------------------------------------
    def __enter__(self) -> Kernel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def bind(self) -> None:
        """Bind the socket. A stale socket file (nobody answers) is replaced; a live one is never stolen."""
        path = self.socket_path
        if len(path.encode()) > 107:
            raise KernelError(f"socket path too long for AF_UNIX (max 107 bytes): {path}")
        if os.path.exists(path):
            if socket_is_live(path):
                raise KernelError(f"a live kernel already listens on {path}")
            os.unlink(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
        self._listener = sock
        for row in self.children.reap_stale():  # agents a crashed kernel left behind
            self.audit.log(
                "AGENT_LIFECYCLE", "AGENT_REAPED", row.get("id", 0), row, agent_name=row.get("name", "")
            )
        self._sel.register(sock, selectors.EVENT_READ, self._on_accept)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)

    def start(self) -> Kernel:
        self.bind()
        self._running = True
        self._thread = threading.Thread(target=self._loop, name="clove-kernel", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self._listener is None:
            self.bind()
        self._running = not self._stop_requested  # a stop asked before serving (a signal) is kept
        self._loop()

    def request_stop(self) -> None:
        """Ask the loop to stop after its current iteration; safe from a signal handler."""
        self._stop_requested = True
        self._running = False
        self._wake()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, stop every spawned agent, flush the trace, remove the socket. Idempotent."""
        if not self._running and self._stopped.is_set():
            return
        if self._thread is None and not self._running:  # never started (or bind failed): just clean up
            self._shutdown()
            self._stopped.set()
            return
        self._running = False
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._stopped.wait(timeout)

    def _shutdown(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        if self._listener is not None:
            if self._accept_paused_until is None:
                self._sel.unregister(self._listener)
            self._listener.close()
            self._listener = None
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass
        self._stop_agents()
        self.children.remove()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.llm is not None and self._own_llm:
            self.llm.close()
        if self.sandbox_launcher is not None:
            self.sandbox_launcher.close()
        self.launcher.close()
        if self.trace is not None:
            self.trace.close()
        self.audit.close()
        self._sel.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._private_dir:
            try:
                os.rmdir(self._private_dir)
            except OSError:
                pass

    def _stop_agents(self) -> None:
        """Ordered shutdown: every agent gets SIGTERM at once, SIGKILL after the grace period."""
        for fd in list(self._fd_waits):  # KILLs in flight: their agents end below, unanswered
            self._stop_fd_wait(fd)
        procs = []
        for agent_id in self.supervisor.shutdown_order():
            self.supervisor.cancel(agent_id)
        for agent in list(self.agents.values()):
            self._unwatch(agent)
            if agent.state != "RESTARTING":
                procs.append(agent.proc)
        self.agents.clear()
        for proc in procs:  # all at once, not as the pool's workers come free; the grace counts from here
            proc.terminate()
        if procs:
            with ThreadPoolExecutor(max_workers=min(len(procs), 32)) as pool:
                list(pool.map(lambda p: p.kill(5.0), procs))

    # ---- the loop ------------------------------------------------------------------------------------
    def _loop(self) -> None:
        self._loop_ident = threading.get_ident()
        try:
            while self._running:
                # wake for the next restart when it is due, not at the next tick (up to TICK_S late)
                restart_at = self.supervisor.next_deadline()
                wait = TICK_S if restart_at is None else min(TICK_S, max(0.0, restart_at - time.monotonic()))
                for key, mask in self._sel.select(wait):
                    data = key.data
                    try:  # free unless it raises (3.11): one failing event must not end every agent
                        if data.__class__ is Connection:  # the hot case, without a callback indirection
                            if mask & selectors.EVENT_WRITE:
                                self._flush(data)
                            if mask & selectors.EVENT_READ and not data.closed:
                                self._read(data)
                        else:
                            data(key.fileobj, mask)
                    except Exception:
                        self._internal_error(f"handling fd {key.fd}")
                        if data.__class__ is Connection:  # in an unknown state: its client sees EOF
                            try:
                                self._close(data)
                            except Exception:
                                self._internal_error(f"closing fd {key.fd}")
                now = time.monotonic()
                try:
                    if restart_at is not None and now >= restart_at:
                        for agent_id in self.supervisor.due(now):
                            self._restart(agent_id)
                    if now - self._last_tick >= TICK_S:
                        self._last_tick = now
                        self._tick()
                    if self._children_stale:  # after this iteration's replies (see save_children)
                        self._children_stale = False  # a failing write is not retried every iteration
                        self.save_children(now=True)
                except Exception:
                    self._internal_error("a restart, the periodic tick or the child table")
        finally:
            self._shutdown()
            self._stopped.set()

    def _tick(self) -> None:
        now = time.monotonic()
        if self._accept_paused_until is not None and now >= self._accept_paused_until:
            self._accept_paused_until = None
            self._sel.register(self._listener, selectors.EVENT_READ, self._on_accept)
        for to_worker in [hand_over for deadline, hand_over in self._fd_waits.values() if deadline <= now]:
            to_worker()
        if self.trace is not None:
            self.trace.flush()
        if self._unidentified and time.monotonic_ns() - self._unidentified[0].accepted_ns > IDENTIFY_WAIT_NS:
            self.launching += 1  # re-check everyone now; launched() gives up on the ones waited too long
            self.launched()
        if self.replayer.state == "running":
            self.replayer.step(self._execute_virtual)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass

    def _on_wake(self, _fd: Any, _mask: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                job = self._completions.get_nowait()
            except queue.Empty:
                return
            try:
                job()
            except Exception:
                self._internal_error(f"a job from a worker thread ({getattr(job, '__qualname__', job)})")

    def _internal_error(self, where: str, exc: BaseException | None = None) -> None:
        """A bug reached the loop: say so loudly on stderr, count it, and keep serving the other agents
        (their syscalls already get an internal-error reply for a failing handler; this covers the rest:
        agent exits, deferred completions, reads and writes). `exc`: the error, unless it is the one
        being handled."""
        self.stats["internal_errors"] += 1
        print(f"clove-gym kernel: internal error in {where}; still serving", file=sys.stderr)
        if exc is None:
            traceback.print_exc()
        else:
            traceback.print_exception(exc)

    def call_soon(self, job: Callable[[], None]) -> None:
        """Run `job` on the kernel thread (thread-safe)."""
        self._completions.put(job)
        self._wake()

    # ---- connections ---------------------------------------------------------------------------------
    def new_id(self) -> int:
        agent_id = self._next_id
        self._next_id += 1
        return agent_id

    def _on_accept(self, listener: socket.socket, _mask: int) -> None:
        for attempt in range(64):
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # accept() takes a descriptor before it looks at the backlog: only the first attempt,
                # made because the listener was readable, tells that a client waits for one
                if attempt == 0 and exc.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting(exc)
                return  # anything else concerns that one connection, already gone
            self._accept_warned = False
            if len(self._conns) >= MAX_CONNECTIONS:
                sock.close()
                continue
            sock.setblocking(False)
            pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
            )
            conn = Connection(sock, 0, pid)
            conn.admin = uid in (0, os.geteuid())  # narrowed in _identify when it is a spawned agent
            self._conns[conn.fd] = conn
            self.stats["connections"] += 1
            self._sel.register(sock, selectors.EVENT_READ, conn)
            owner = self._spawned_owner(pid)
            if owner is None and self.launching:
                # a spawn in flight may be this process: its pid is known once the launch completes,
                # so the connection waits (its frames are buffered) until then
                self._unidentified.append(conn)
            else:
                self._identify(conn, owner)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors or memory: the listener stays readable while a client waits in its
        backlog, so accepting again at once would spin this loop. It is set aside until the first tick
        ACCEPT_RETRY_S on (asyncio's loop does the same); the client is accepted once a descriptor is
        freed, meanwhile connected clients are served as usual."""
        self._sel.unregister(self._listener)
        self._accept_paused_until = time.monotonic() + ACCEPT_RETRY_S
        self.stats["accept_paused"] += 1
        if not self._accept_warned:  # once until an accept succeeds again
            self._accept_warned = True
            print(
                f"clove-gym kernel: cannot accept connections: {exc.strerror} ({fdlimit.describe()});"
                f" retrying every {ACCEPT_RETRY_S:g} s",
                file=sys.stderr,
            )

    def _identify(self, conn: Connection, owner: int | None) -> None:
        """C13 + trust: a spawned agent's first connection gets its spawn id; anything in a spawned agent's
        process tree is never an admin; others get a fresh id."""
        conn.id = owner if owner is not None and owner not in self._by_id else self.new_id()
        conn.admin = conn.admin and owner is None
        self._by_id[conn.id] = conn
        self.dp.add_agent(conn.id)
        if conn.inbuf:
            self._pump(conn)

    def starting(self, pid: int, agent_id: int, perms: Permissions | None) -> None:
        """A spawn in flight reached the point where its agent may connect (kernel thread): its init is
        `pid`. The agent's connections are named at once instead of waiting for the spawn's reply, with
        the rights it was granted (`perms`; None keeps those it has, for a restart)."""
        self._starting[pid] = agent_id
        if perms is not None and agent_id not in self._perms:
            self._perms[agent_id] = perms
        self._recheck_unidentified()

    def start_ended(self, agent_id: int) -> None:
        """A spawn or restart of `agent_id` ended (kernel thread, after its entry was updated): its entry
        names the agent from now on; rights given in advance to an agent that never ran are taken back."""
        for pid in [p for p, a in self._starting.items() if a == agent_id]:
            del self._starting[pid]
        if agent_id not in self.agents:
            self._perms.pop(agent_id, None)

    def launched(self) -> None:
        """A spawn or restart finished (either way): identify the connections that were waiting for it."""
        self.launching = max(self.launching - 1, 0)
        self._recheck_unidentified()

    def _recheck_unidentified(self) -> None:
        waiting, self._unidentified = self._unidentified, []
        for conn in waiting:
            if conn.closed:
                continue
            owner = self._spawned_owner(conn.peer_pid)
            if owner is None and self.launching and time.monotonic_ns() - conn.accepted_ns < IDENTIFY_WAIT_NS:
                self._unidentified.append(conn)
            else:
                self._identify(conn, owner)

    def _spawned_owner(self, pid: int) -> int | None:
        """The id of the live spawned agent whose process is `pid` or one of its ancestors (a sandbox puts
        an init process between the launcher's pid and the agent), or None."""
        by_pid = {a.proc.pid: a.id for a in self.agents.values() if a.state not in ("RESTARTING", "STOPPED")}
        by_pid.update(self._starting)
        for _ in range(16):
            if pid in by_pid:
                return by_pid[pid]
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    pid = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                return None
            if pid <= 1:
                return None
        return None

    def is_admin(self, agent_id: int) -> bool:
        conn = self._by_id.get(agent_id)
        return conn is not None and conn.admin

    def _read(self, conn: Connection) -> None:
        try:
            # into a buffer kept for the purpose, then copied out at its exact size: recv(RECV_CHUNK)
            # made a new 256 KiB bytes each time, above malloc's mmap threshold, i.e. an mmap, a page
            # fault, an mremap and an munmap on every read (measured: NOOP RTT 43 us -> 21 us)
            data = self._rview[: conn.sock.recv_into(self._rbuf)].tobytes()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        conn.recv_ns = now = time.monotonic_ns()
        if not conn.id:  # not identified yet (see _on_accept): keep the bytes, answer later
            conn.inbuf += data
            if len(conn.inbuf) > IN_HIGH:
                self._close(conn)
            return
        if not conn.inbuf and not conn.outbuf and not conn.busy and not conn.discard:
            # hot path: whole fast-path frames answered straight from the received bytes
            out, pos, status = self.dp.process(conn.id, data, 0, 0, now)
            if status == SPLIT_OK and pos == len(data):
                if out:
                    try:
                        sent = conn.sock.send(out)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError:
                        self._close(conn)
                        return
                    if sent < len(out):
                        conn.outbuf += memoryview(out)[sent:]
                        self._update_interest(conn)
                return
            conn.outbuf += out
            conn.inbuf += memoryview(data)[pos:]
        else:
            conn.inbuf += data
        self._pump(conn)

    def _pump(self, conn: Connection) -> None:
        """Answer every complete frame in conn.inbuf, in order, until one must wait for a worker."""
        buf = conn.inbuf
        pos = 0
        while not conn.busy and not conn.closed:
            if conn.discard:
                take = min(conn.discard, len(buf) - pos)
                pos += take
                conn.discard -= take
                if conn.discard:
                    break
                self._respond(conn, conn.discard_op, b'{"success": false, "error": "payload too large"}')
                continue
            out, pos, status = self.dp.process(conn.id, buf, pos, 0, conn.recv_ns)
            if out:
                conn.outbuf += out
            if status == SPLIT_OK:
                break
            if status == py_dataplane.PROCESS_SLOW:
                _magic, _aid, opcode, size = HEADER.unpack_from(buf, pos)
                payload = bytes(buf[pos + HEADER_SIZE : pos + HEADER_SIZE + size])
                pos += HEADER_SIZE + size
                self._dispatch(conn, opcode, payload)
            elif status == SPLIT_OVERSIZE:
                _magic, _aid, opcode, size = HEADER.unpack_from(buf, pos)
                pos += HEADER_SIZE
                conn.discard, conn.discard_op = size, opcode
                self._protocol_error(conn, opcode, size)
            elif status == SPLIT_BAD_MAGIC:
                self._protocol_error(conn, 0, len(buf) - pos)
                self._flush(conn)
                self._close(conn)
                return
        if pos:
            del buf[:pos]
        self._flush(conn)
        self._update_interest(conn)

    def _protocol_error(self, conn: Connection, opcode: int, size: int) -> None:
        self.stats["protocol_errors"] += 1
        if self.trace is not None:
            self.trace.record(0, opcode, conn.id, time.monotonic_ns(), result=2)

    def _respond(self, conn: Connection, opcode: int, payload: bytes) -> None:
        conn.outbuf += HEADER.pack(MAGIC, conn.id, opcode, len(payload))
        conn.outbuf += payload

    def _flush(self, conn: Connection) -> None:
        if conn.closed or not conn.outbuf:
            self._update_interest(conn)
            return
        try:
            sent = conn.sock.send(conn.outbuf)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(conn)
            return
        if sent:
            del conn.outbuf[:sent]
        self._update_interest(conn)

    def _update_interest(self, conn: Connection) -> None:
        if conn.closed:
            return
        out = len(conn.outbuf)
        if out > OUT_HIGH and not conn.throttled:
            conn.throttled = True
            self.stats["throttled"] += 1
            self.emit("RESOURCE_WARNING", {"agent_id": conn.id, "resource": "unread_responses", "bytes": out})
        elif out < OUT_LOW:
            conn.throttled = False
        reading = not conn.throttled and not (conn.busy and len(conn.inbuf) > IN_HIGH)
        mask = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if out else 0)
        if mask != conn.mask:
            if conn.mask == 0:
                self._sel.register(conn.sock, mask, conn)
            elif mask == 0:
                self._sel.unregister(conn.sock)
            else:
                self._sel.modify(conn.sock, mask, conn)
            conn.mask = mask

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.mask:
            self._sel.unregister(conn.sock)
            conn.mask = 0
        self._conns.pop(conn.fd, None)
        conn.sock.close()
        if not conn.id:
            return
        if self._by_id.get(conn.id) is conn:
            del self._by_id[conn.id]
        self.release(conn.id)

    def release(self, agent_id: int) -> None:
        """C6: a connection is gone: names, mailbox, subscriptions, async results, permissions go too.
        A spawned agent that is still alive stays a valid message target (it may reconnect)."""
        self.dp.remove_agent(agent_id)
        self.bus.forget(agent_id)
        self._update_fast_ops()
        if agent_id in self.agents or agent_id in self._starting.values():  # may reconnect
            self.dp.add_agent(agent_id)
        else:
            self._perms.pop(agent_id, None)

    # ---- dispatch ------------------------------------------------------------------------------------
    def _dispatch(self, conn: Connection, opcode: int, payload: bytes) -> None:
        t0 = time.monotonic_ns()
        queue_ns = t0 - conn.recv_ns if conn.recv_ns else 0
        handler = self._handlers.get(opcode, self._unknown)
        self.stats["syscalls_slow"] += 1
        try:
            result = handler(conn.id, opcode, payload, conn)
        except Exception as exc:  # the kernel never crashes on a request (C10)
            result = {"success": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if result is DEFERRED:
            return
        self._complete(conn, opcode, payload, result, t0, queue_ns)

    def defer(
        self,
        conn: Connection | None,
        opcode: int,
        payload: bytes,
        work: Callable[[], Any],
        then: Callable[[Any], Any] | None = None,
    ) -> _Deferred:
        """Run `work` on a worker thread; `then(result)` (on the kernel thread) makes the response.
        The connection takes no further frames until it is answered."""
        t0 = time.monotonic_ns()
        queue_ns = t0 - conn.recv_ns if conn is not None and conn.recv_ns else 0
        if conn is not None:
            conn.busy = True

        def finish(response: Any) -> None:
            if conn is not None:
                self._answer_deferred(conn, opcode, payload, response, t0, queue_ns)

        self._submit(work, then, finish)
        return DEFERRED

    def _submit(
        self, work: Callable[[], Any], then: Callable[[Any], Any] | None, answer: Callable[[Any], None]
    ) -> None:
        """Run `work` on a worker thread, then `answer(then(result))` on the kernel thread; an exception
        from either becomes an internal-error response, never lost."""

        def run() -> None:
            try:
                value = work()
            except BaseException as exc:
                err = exc
                self.call_soon(lambda: answer(_internal_error_response(err)))
                return
            self.call_soon(lambda: answer(_respond(then, value)))

        self._pool.submit(run)

    def defer_until_readable(
        self,
        conn: Connection,
        opcode: int,
        payload: bytes,
        fd: int,
        attempt: Callable[[], Any],
        work: Callable[[], Any],
        then: Callable[[Any], Any],
        deadline: float,
    ) -> _Deferred:
        """Like defer(), for work that is usually over once `fd` turns readable: `attempt()` then runs on
        the kernel thread and gives the value for `then`, or None when it cannot tell, and `work` runs on
        a worker thread instead, as it does at `deadline` (monotonic) if `fd` is not readable by then.
        Why not a worker from the start: a worker asleep on `fd` that then wakes this thread is one more
        wake-up of a sleeping thread, and on a VM each one may wait for the host to run an idle vCPU.
        `fd` is duplicated, so its owner may close it meanwhile."""
        try:
            own = os.dup(fd)
        except OSError:  # closed already: the worker finds out what that means
            return self.defer(conn, opcode, payload, work, then)

        def start(answer: Callable[[Any], None]) -> None:
            def to_worker() -> None:
                self._stop_fd_wait(own)
                self._submit(work, then, answer)

            def ready(_fd: Any, _mask: int) -> None:
                try:
                    value = attempt()
                except Exception:  # `work` meets it again and reports it
                    value = None
                if value is None:
                    to_worker()
                else:
                    self._stop_fd_wait(own)
                    answer(_respond(then, value))

            self._fd_waits[own] = (deadline, to_worker)
            self._sel.register(own, selectors.EVENT_READ, ready)

        return self.defer_callback(conn, opcode, payload, start)

    def _stop_fd_wait(self, fd: int) -> None:
        del self._fd_waits[fd]
        self._sel.unregister(fd)
        os.close(fd)

    def defer_callback(
        self, conn: Connection, opcode: int, payload: bytes, start: Callable[[Callable[[Any], None]], None]
    ) -> _Deferred:
        """Like defer(), for work that reports through a callback (THINK's LLM queue): `start(done)` runs
        now; `done(response)` may be called from any thread, once."""
        t0 = time.monotonic_ns()
        queue_ns = t0 - conn.recv_ns if conn.recv_ns else 0
        conn.busy = True

        def finish(response: Any) -> None:
            self._answer_deferred(conn, opcode, payload, response, t0, queue_ns)

        def done(response: Any) -> None:
            if started and threading.get_ident() == self._loop_ident:
                finish(response)  # from an event of the loop: waking the loop would cost a round of it
            else:  # another thread, or start() itself, before its request was taken as deferred
                self.call_soon(lambda: finish(response))

        started = False
        start(done)
        started = True
        return DEFERRED

    def _answer_deferred(
        self, conn: Connection, opcode: int, payload: bytes, response: Any, t0: int, queue_ns: int
    ) -> None:
        """Send a deferred response, then take the connection's next frames. Failing here is a bug: it is
        reported, and the connection closed, so its client sees EOF now instead of waiting out its
        timeout for a reply that will never come (as for a failing event on the loop)."""
        conn.busy = False
        try:
            self._complete(conn, opcode, payload, response, t0, queue_ns)
            if not conn.closed:
                self._pump(conn)
        except Exception:
            self._internal_error(f"answering a deferred request of agent {conn.id}")
            try:
                self._close(conn)
            except Exception:
                self._internal_error(f"closing the connection of agent {conn.id}")

    def _complete(
        self, conn: Connection, opcode: int, payload: bytes, result: Any, t0: int, queue_ns: int
    ) -> None:
        body = result if isinstance(result, bytes) else json.dumps(result).encode()
        t1 = time.monotonic_ns()
        failed = body.startswith(b'{"success": false')
        if self.trace is not None:
            self.trace.record(
                0,
                opcode,
                conn.id,
                t0,
                service_ns=min(t1 - t0, 0xFFFFFFFF),
                queue_ns=min(max(queue_ns, 0), 0xFFFFFFFF),
                result=1 if failed else 0,
                req=payload,
                resp=body,
            )
        if self.recorder.wants(conn.id, opcode):
            self.recorder.add(conn.id, opcode, payload, body, t1 - t0)
        if self.audit.config["log_syscalls"]:
            self.audit.log(
                "SYSCALL",
                Op(opcode).name if opcode in Op._value2member_map_ else f"0x{opcode:02X}",
                conn.id,
                {"request_bytes": len(payload), "response_bytes": len(body)},
                not failed,
            )
        if conn.closed:
            return
        self._respond(conn, opcode, body)

    def _execute_virtual(self, agent_id: int, opcode: int, payload: bytes) -> bytes:
        """Run one recorded request as `agent_id` without a connection (replay). Deferred syscalls are
        served from the recording by the replayer, so every handler here answers synchronously."""
        handler = self._handlers.get(opcode, self._unknown)
        try:
            result = handler(agent_id, opcode, payload, None)
        except Exception as exc:
            result = {"success": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        if result is DEFERRED:
            return b'{"success": false, "error": "not replayable"}'
        return result if isinstance(result, bytes) else json.dumps(result).encode()

    # ---- shared services -----------------------------------------------------------------------------
    def perms(self, agent_id: int) -> Permissions:
        """The agent's rights, created on first use: admins may spawn, others get plain standard (C1)."""
        p = self._perms.get(agent_id)
        if p is None:
            p = self._perms[agent_id] = Permissions(can_spawn=self.is_admin(agent_id))
        return p

    def emit(self, event_type: str, data: Any, source: int = 0) -> dict[str, Any]:
        event = self.bus.emit(event_type, data, source)
        if self.trace is not None:
            self.trace.record(
                1,
                EVENT_CODES.get(event_type, 11),
                source,
                time.monotonic_ns(),
                req=json.dumps(event).encode(),
            )
        return event

    def _update_fast_ops(self) -> None:
        """Frames the data plane may answer by itself: all hot ones unless a hook must see them."""
        if self.recorder.active or self.audit.config["log_syscalls"]:
            self.dp.set_fast_ops(())
            return
        ops = set(py_dataplane.FAST_OPS)
        if self.audit.config["log_ipc"] or self.bus.has_subscribers("MESSAGE_RECEIVED"):
            ops -= {Op.SEND, Op.BROADCAST}
        if self.audit.config["log_state"] or self.bus.has_subscribers("STATE_CHANGED"):
            ops -= {Op.STORE}
        self.dp.set_fast_ops(ops)

    def sandbox(self) -> Any:
        """The sandbox launcher, started (with its zygote) on the first sandboxed spawn."""
        if self.sandbox_launcher is None:
            from clove_gym.runtime.sandbox import Launcher

            self.sandbox_launcher = Launcher()
        return self.sandbox_launcher

    def save_children(self, *, now: bool = False) -> None:
        """Keep the on-disk child table (see childtable.py) in step with the agents. A table that gains
        an agent is rewritten at once, before the spawn is answered: a kernel killed right after must
        find it there. One that only loses agents is rewritten at the end of this loop iteration (or
        `now`), after its replies are sent, so a KILL is answered without waiting for the file (0.3 ms
        a rewrite here); a stale row is harmless, as rows are matched by start time. Unchanged rows are
        not rewritten."""
        rows = {
            (a.id, a.name, a.proc.pid)
            for a in self.agents.values()
            if a.state in ("RUNNING", "PAUSED", "STOPPING")
        }
        if rows == self._saved_rows:
            self._children_stale = False
        elif now or rows - self._saved_rows:
            self.children.save([{"id": i, "name": name, "pid": pid} for i, name, pid in sorted(rows)])
            self._saved_rows = rows
            self._children_stale = False
        else:
            self._children_stale = True

    def _watch(self, agent: ManagedAgent, on_exit: Callable[[ManagedAgent], None]) -> None:
        agent.watch_fd = agent.proc.fileno()
        self.save_children()
        self._sel.register(agent.watch_fd, selectors.EVENT_READ, lambda _f, _m: on_exit(agent))

    def _unwatch(self, agent: ManagedAgent) -> None:
        """Stop watching the pidfd; always before anything may close it (fd numbers are reused)."""
        if agent.watch_fd >= 0:
            self._sel.unregister(agent.watch_fd)
            agent.watch_fd = -1
            self.save_children()


def _py_writer(path: str, cap: int) -> Any:
    from clove_gym.runtime.trace.writer import TraceWriter

    return TraceWriter(path, cap=cap)
