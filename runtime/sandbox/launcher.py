"""Launcher and AgentProcess: the interface the kernel's SPAWN/KILL/PAUSE/RESUME/LIST/METRICS handlers use.

The launcher decides *what* an agent gets (namespaces, binds, uid, cgroup, rlimits) and asks its zygote
to fork it; the AgentProcess then controls the whole tree through the cgroup (or, without one, through
the PID namespace and signals). Every reduction of isolation is reported in `isolation`, never hidden.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from clove_gym import native
from clove_gym.runtime import fdlimit

from . import cgroups, pidfds, seccomp_policy
from . import syscalls as sc
from .spec import SpawnError, SpawnSpec
from .zygote import readable, recv, send

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc")
_DEFAULT_PRELOAD = ("json", "socket", "struct", "asyncio", "clove_gym.runtime.protocol", "clove_sdk")
_CLOVE_GYM_FOLDERS = ("runtime", "worlds", "benchmarks", "sim", "hw", "native")
_UID_BASE = 1 << 30  # agents' uids: far above any real account; AGENT_GID = _UID_BASE is their shared group
_EXIT_WAIT = 5.0
_READ_ROUND = 0.05  # a reading thread re-checks its own wait at least this often
_TMP_BYTES = 256 << 20  # private /tmp and /dev/shm size; their pages count against the memory limit
_ZYGOTE_MAIN = "import sys; from clove_gym.runtime.sandbox.zygote import main; main(sys.argv[1:])"
_launcher_ids = itertools.count()


def _python_roots() -> list[str]:
    """Directories an agent needs to run this interpreter and import clove_gym and clove_sdk."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    roots.update(p for p in sys.path[1:] if p and os.path.isdir(p))  # [0] is the launcher's script dir
    for folder in _CLOVE_GYM_FOLDERS:  # each package, not the checkout around them (tests, .git, ...)
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(f"clove_gym.{folder}")
            if spec is not None and spec.submodule_search_locations:
                roots.update(spec.submodule_search_locations)
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("clove_sdk")
        if spec is not None and spec.submodule_search_locations:
            roots.update(os.path.dirname(p) for p in spec.submodule_search_locations)
    return sorted(roots)


def _minimal(paths: list[str]) -> list[str]:
    """Drop paths already covered by a listed ancestor (a nested bind would be redundant)."""
    out: list[str] = []
    kept: set[str] = set()
    for p in sorted({os.path.normpath(p) for p in paths}):
        if not _covered(p, kept):
            out.append(p)
            kept.add(p)
    return out


def _covered(path: str, kept: set[str]) -> bool:
    """`path` or one of its ancestors is in `kept` (a lookup per path component, not per kept path)."""
    if path in kept or "/" in kept:
        return True
    cut = path.find("/", 1)
    while cut != -1:
        if path[:cut] in kept:
            return True
        cut = path.find("/", cut + 1)
    return False


_MAX_SORTED_CHILDREN = 16  # init's children whose ages terminate() compares to find the agent


def _age(pid: int) -> tuple[int, int]:
    """(start time in clock ticks, pid in its own namespace): orders processes by start, and within one
    tick by namespace pid, which a new namespace hands out in order."""
    start = int(pidfds.read_all(f"/proc/{pid}/stat").rsplit(b")", 1)[1].split()[19])
    status = pidfds.read_all(f"/proc/{pid}/status").splitlines()
    nspid = next(line for line in status if line.startswith(b"NSpid:"))
    return start, int(nspid.split()[-1])


class AgentProcess:
    """One running agent tree. `pid` is the host pid of its init (or of the agent when unsandboxed)."""

    def __init__(
        self,
        launcher: Launcher,
        spec: SpawnSpec,
        pid: int,
        pidfd: int,
        release_fd: int,
        group: cgroups.Cgroup | None,
        isolation: dict[str, Any],
    ) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.release_fd = release_fd  # readable once the zygote reported the agent released, or is gone
        self.agent_id = spec.agent_id
        self.name = spec.name
        self.isolation = isolation
        self._launcher = launcher
        self._group = group
        self._pid_ns = spec.sandboxed and isolation["namespaces"]["pid"]
        self._status: int | None = None
        self._paused = False
        self._term_at: float | None = None  # when terminate() sent SIGTERM
        self._oom_kills = 0
        self._lock = threading.Lock()
        self._ns_link = self._session = None
        if group is None:  # remember how to find the tree without a cgroup
            with contextlib.suppress(OSError):
                self._ns_link = os.readlink(f"/proc/{pid}/ns/pid")
                self._session = os.getsid(pid)

    def fileno(self) -> int:
        """Readable once the zygote has reported the agent released (poll() then has its status unless
        another thread is reading the report), or once the zygote is gone. Init's pidfd turns readable
        earlier, at its exit, and a caller woken by it would then have to wait for the report too."""
        return self.release_fd

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def cgroup_path(self) -> str | None:
        """The group's path relative to each hierarchy's root while it exists, else None."""
        return self._group.rel if self._group is not None and self._status is None else None

    def _dead(self) -> bool:
        return self._status is not None or bool(readable([self.pidfd], 0))

    def _signal(self, signo: int) -> None:
        """Signal init through its pidfd: never another process that reused the pid."""
        with self._lock, contextlib.suppress(ProcessLookupError):
            if self._status is None:  # the pidfd is still ours
                signal.pidfd_send_signal(self.pidfd, signo)

    def _exit_status(self) -> int:
        """The zygote's report of init's exit. It comes after the zygote reaped init (so no zombie is
        left) and removed the cgroup, i.e. once everything is released."""
        try:
            return self._launcher._wait_status(self.pid, _EXIT_WAIT)
        except SpawnError:  # the zygote itself died: the status is lost, the agent is not
            return 128 + signal.SIGKILL

    def poll(self) -> int | None:
        """Exit status (128+signo after a signal) once the agent has exited and the zygote has reported
        it released, else None; never blocks. The first call that sees the report also drops the pidfd."""
        if self._status is not None:
            return self._status
        self._launcher._pump_ready()
        if self.pid in self._launcher._statuses:
            self._finish(self._launcher._statuses[self.pid])
        return self._status

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the agent exits and is released (status) or `timeout` seconds pass (None)."""
        if self._status is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            # the report first; init's own exit only matters when the zygote is gone and cannot report
            for fd in (self.release_fd, self.pidfd):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(OSError, ValueError):  # released meanwhile by another thread
                    readable([fd], left)
                if self._status is not None or self._dead():
                    break
            if self._status is None and self._dead():
                self._finish(self._exit_status())
        return self._status

    def _finish(self, status: int) -> None:
        with self._lock:  # the kernel may kill on a worker thread while its loop polls
            if self._status is not None:
                return
            self._oom_kills = self._launcher._ooms.pop(self.pid, 0)
            # the zygote removed the group before its report, unless it was busy or no report came
            if self._group is not None and not self._launcher._removed.pop(self.pid, False):
                self._group.remove(timeout=0)
            os.close(self.pidfd)
            os.close(self.release_fd)
            self._status = status
            self._launcher._release(self.pid)

    def _tree(self) -> list[int]:
        """Host pids of the tree when there is no cgroup: same PID namespace, or same session."""
        return [int(e) for e in os.listdir("/proc") if e.isdigit() and self._member(int(e))]

    def _member(self, pid: int) -> bool:
        """Whether the process that has `pid` now is in the tree (no cgroup: by namespace or session)."""
        try:
            if self._pid_ns:
                return os.readlink(f"/proc/{pid}/ns/pid") == self._ns_link
            return os.getsid(pid) == self._session
        except OSError:
            return False

    def _signal_members(self, pids: list[int], signo: int) -> None:
        """Signal those of `pids` still in the tree (no cgroup), through pidfds (see `pidfds`)."""
        pidfds.signal_listed(pids, signo, lambda held: [p for p in held if self._member(p)])

    def _signal_tree(self, signo: int) -> None:
        self._signal_members(self._tree(), signo)

    def pause(self) -> None:
        """Freeze the whole tree (freezer cgroup; SIGSTOP to every member without one)."""
        if self._status is not None or self.poll() is not None:
            raise ProcessLookupError(f"agent {self.agent_id} ({self.name}) has exited")
        if self._group is not None:
            self._group.freeze()
        else:
            cgroups.wait_for(lambda: self._settle_tree(stop=True), "SIGSTOP to stop the whole tree")
        self._paused = True

    def _settle_tree(self, stop: bool) -> bool:
        """Signal every member not yet in the wanted state (a child forked meanwhile too); True once
        none is left. Without a freezer this is the best signals can do: a vfork parent (state D)
        counts as stopped, it cannot run until its child does."""
        pending = []
        for pid in self._tree():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue  # gone meanwhile
            if (state not in ("T", "t", "Z", "X", "D")) if stop else state in ("T", "t"):
                pending.append(pid)
        self._signal_members(pending, signal.SIGSTOP if stop else signal.SIGCONT)
        return not pending

    def resume(self) -> None:
        if self._status is not None:
            raise ProcessLookupError(f"agent {self.agent_id} ({self.name}) has exited")
        if self._group is not None:
            self._group.thaw()
        else:
            cgroups.wait_for(lambda: self._settle_tree(stop=False), "SIGCONT to resume the whole tree")
        self._paused = False

    def terminate(self) -> None:
        """SIGTERM now, without waiting, once, to the agent itself; kill() then counts its grace period
        from here. A paused agent is left to kill()'s SIGKILL: frozen, it cannot handle SIGTERM."""
        if self._term_at is None and not self._paused:
            self._term_at = time.monotonic()
            if not (self._pid_ns and self._signal_agent(signal.SIGTERM)):
                self._signal(signal.SIGTERM)  # init forwards it

    def _signal_agent(self, signo: int) -> bool:
        """`signo` straight to the agent, not through init, which would forward it: waking init first
        puts one more wake-up of a sleeping process in series with the agent's exit, and on a VM each
        may wait for the host to run an idle vCPU. The agent is the child init started first (init
        forks it and nothing else; its other children are orphans of the agent's tree). It is signalled
        through a pidfd, opened before it is found init's child still. False when there is no such
        child, or it cannot be told (init is exiting): then init's pidfd gets the signal."""
        with self._lock:
            if self._status is not None:
                return True  # released: nothing is left to signal
            children = pidfds.children(self.pid)
            if len(children) > _MAX_SORTED_CHILDREN:
                return False  # not worth reading their ages on the kernel's thread: init forwards it
            try:
                agent = children[0] if len(children) == 1 else min(children, key=_age)
                pidfd = os.pidfd_open(agent)
            except (OSError, ValueError, StopIteration):  # none, or gone meanwhile
                return False
            try:
                # still init's child with the pidfd held, and init alive after this listing, so the
                # listing was init's (the pid of a reaped init may be another process's)
                if agent not in pidfds.children(self.pid) or self._dead():
                    return False
                signal.pidfd_send_signal(pidfd, signo)
            except ProcessLookupError:
                pass  # reaped since: init has its status and exits
            except OSError:
                return False
            finally:
                os.close(pidfd)
            return True

    def _await_report(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the zygote's report that init exited and all is released.
        Only that report ends a kill: waiting on the pidfd as well woke this thread once more, at init's
        exit, and each wake-up of a sleeping thread may wait for its idle vCPU to be run by the host."""
        with contextlib.suppress(OSError, ValueError):  # released meanwhile by another thread
            readable([self.release_fd], timeout)

    def kill(self, timeout: float = 5.0) -> int:
        """SIGTERM (unless terminate() sent it), then `timeout` seconds after it SIGKILL to the whole tree
        (at once when paused: a frozen agent cannot handle SIGTERM). Returns the exit status once every
        resource is released."""
        if self.poll() is not None:
            return self._status  # type: ignore[return-value]
        if timeout > 0 and not self._paused:
            self.terminate()
            sent = self._term_at or time.monotonic()
            self._await_report(max(0.0, sent + timeout - time.monotonic()))
        if not self._dead():
            self._signal(signal.SIGKILL)  # as pid 1, init takes its whole namespace along
            if self._group is not None:
                self._group.kill_all()  # also thaws a frozen tree so the kill lands
            else:
                self._signal_tree(signal.SIGKILL)
                self._signal_tree(signal.SIGCONT)
        if self._status is None:
            self._finish(self._exit_status())
        self._paused = False
        return self._status  # type: ignore[return-value]

    def metrics(self) -> dict[str, Any]:
        """METRICS_CGROUP `metrics` object (spec §2.11); zeros when there is no cgroup or it is gone."""
        if self._group is not None and self._status is None:
            return self._group.metrics()
        m = cgroups.empty_metrics(self._group.rel if self._group else "", self.isolation["mechanism"])
        m["memory"]["oom_kills"] = self._oom_kills
        return m

    def oom_killed(self) -> bool:
        if self._group is not None and self._status is None:
            return self._group.oom_kills() > 0
        return self._oom_kills > 0


class Launcher:
    """Starts sandboxed agents through a zygote and keeps track of them until `close()`."""

    def __init__(
        self,
        root_cgroup_name: str = "clove-gym",
        preload: tuple[str, ...] = _DEFAULT_PRELOAD,
        pool_size: int = 4,
        native_init: bool | None = None,
    ) -> None:
        """`pool_size` warm slots are kept ready for sandboxed, network-less agents (0 disables).
        `native_init`: pid 1 of each sandbox is the C `clove-init` (True; it must be built), its Python
        twin (False), or the C one where it is built (None)."""
        if not root_cgroup_name or "/" in root_cgroup_name or root_cgroup_name.startswith("."):
            raise ValueError(f"root_cgroup_name: expected a plain directory name, got {root_cgroup_name!r}")
        self._init_program = native.init_program() if native_init is not False else None
        if native_init and self._init_program is None:
            raise ValueError(
                "native_init=True: clove-init is not built (build it with `setup.py build_ext --inplace`)"
                " or CLOVE_GYM_NATIVE=0 disables it"
            )
        self._root_name = root_cgroup_name
        self._tag = f"{os.getpid()}-{next(_launcher_ids)}"
        self._root = os.geteuid() == 0
        self._v2 = cgroups.v2_mount()
        mechanism = "cgroup2" if cgroups.v2_usable() else "cgroup1" if cgroups.v1_usable() else "rlimit"
        self.capabilities: dict[str, Any] = {
            "root": self._root,
            "userns": self._root or self._probe_userns(),
            "namespaces": True,
            "cgroup2": mechanism == "cgroup2",
            "cgroup1": cgroups.v1_usable(),
            "rlimit": True,
            "mechanism": mechanism,
            "seccomp": seccomp_policy.available(),
            "pidfd": hasattr(os, "pidfd_open"),
            "init": "native" if self._init_program else "python",
        }
        self.capabilities["namespaces"] = self._root or self.capabilities["userns"]
        self._agents: dict[int, AgentProcess] = {}
        self._statuses: dict[int, int] = {}
        self._ooms: dict[int, int] = {}  # OOM kills the zygote read before it removed the cgroup
        self._removed: dict[int, bool] = {}  # whether the zygote could remove the cgroup
        self._live: set[int] = set()  # inits whose exit report is still to come
        self._replies: collections.deque[tuple[dict[str, Any], list[int]]] = collections.deque()
        # one thread reads the control socket at a time and files what it reads; the others wait on
        # this condition, woken after every read, so none waits on another's reply (a plain lock let
        # a thread waiting for an exit re-take it at once and starve a spawn of its reply for 100+ ms)
        self._io = threading.Condition()
        self._reading = False
        self._spawn_lock = threading.Lock()
        self._socket_modes: set[tuple[str, int]] = set()
        fdlimit.raise_soft()  # before the zygote starts, so it inherits the raised limit too
        self._newroot = tempfile.mkdtemp(prefix="clove-gym-root-")
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_MAIN, str(theirs.fileno()), *preload],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a kill of our process group must leave it alive to clean up
        )
        theirs.close()
        self._ready: dict[str, Any] | None = None
        self._closed = False
        self._base_binds = [
            (p, False) for p in _minimal([p for p in (*_SYSTEM_DIRS, *_python_roots()) if os.path.lexists(p)])
        ]
        self._base_set = {p for p, _ in self._base_binds}
        self._root_rel = root_rel = f"{self._root_name}/{self._tag}"
        if mechanism == "cgroup1":
            tag_dirs = [os.path.join(cgroups.CGROUP_ROOT, c, root_rel) for c in cgroups.V1_CONTROLLERS]
        else:
            tag_dirs = [os.path.join(self._v2, root_rel)] if mechanism == "cgroup2" and self._v2 else []
        self._tag_dirs = tag_dirs
        self._cleanup_dirs = [*tag_dirs, self._newroot]
        config = {
            "op": "config",
            "pool_size": pool_size if self._root else 0,
            "mechanism": mechanism,
            "root_rel": root_rel,
            "v2_mount": self._v2,
            "newroot": self._newroot,
            "base_binds": self._base_binds,
            "tmp_bytes": _TMP_BYTES,
            "cleanup_dirs": self._cleanup_dirs,
            "init_program": self._init_program,
        }
        send(self._control, config)
        self._slot_binds: list[tuple[str, bool]] = []

    @staticmethod
    def _probe_userns() -> bool:
        """Whether this (unprivileged) user may create user namespaces, tried in a throwaway process."""
        flags = sc.CLONE_NEWUSER | sc.CLONE_NEWNS | sc.CLONE_NEWPID | sc.CLONE_NEWNET
        code = f"import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare({flags}) != 0)"
        return subprocess.run([sys.executable, "-S", "-c", code], check=False).returncode == 0

    # -- zygote messaging -------------------------------------------------------------------------
    def _pump(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Read zygote messages until `done()` holds. Any thread may read: whatever it reads is filed
        (exit statuses, spawn replies) for the thread that waits for it."""
        deadline = time.monotonic() + timeout
        while True:
            with self._io:
                while not done() and self._reading:
                    self._io.wait(max(0.0, deadline - time.monotonic()))
                    if time.monotonic() >= deadline:
                        break
                if done():
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SpawnError(f"zygote did not report {what} within {timeout}s")
                self._reading = True
            try:
                self._read_some(min(left, _READ_ROUND))
            finally:
                self._stop_reading()

    def _read_some(self, wait: float) -> None:
        """As the one reading thread: file every message that arrives within `wait` seconds, or is there."""
        while readable([self._control], wait):
            with self._io:
                self._receive()
                self._io.notify_all()
            wait = 0.0

    def _receive(self) -> None:
        """Read and file one zygote message (the caller is the reading thread and holds `_io`)."""
        message, fds = recv(self._control)
        if message is None:
            raise SpawnError(f"zygote exited (status {self._zygote.poll()})")
        if message["op"] == "exit":
            if message["pid"] in self._live:
                self._statuses[message["pid"]] = message["status"]
                self._ooms[message["pid"]] = message.get("oom_kills", 0)
                self._removed[message["pid"]] = message.get("removed", False)
            self._live.discard(message["pid"])
        elif message["op"] == "ready":
            self._ready = message
        else:
            if message["op"] == "spawned":
                self._live.add(message["pid"])
            self._replies.append((message, fds))

    def _pump_ready(self) -> None:
        """File whatever the zygote has already sent, without waiting (a thread already reading does it)."""
        with self._io:
            if self._reading:
                return
            self._reading = True
        try:
            self._read_some(0.0)
        except SpawnError:
            pass  # the zygote is gone: wait() reports that
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        """Hand the socket back: a waiting thread may read next (or finds its message filed)."""
        with self._io:
            self._reading = False
            self._io.notify_all()

    def _release(self, pid: int) -> None:
        """An agent is finished: forget its status, and its zygote report if that is still to come."""
        self._statuses.pop(pid, None)
        self._ooms.pop(pid, None)
        self._removed.pop(pid, None)
        self._agents.pop(pid, None)
        self._live.discard(pid)

    def _abandon(self, pid: int, fds: list[int]) -> None:
        """Have the zygote kill an agent this launcher cannot track (by pid: the zygote has not reaped it,
        so the pid is still its init's), and forget it: its exit report is dropped when it comes."""
        for fd in fds:
            os.close(fd)
        with self._io:
            self._release(pid)
        send(self._control, {"op": "abandon", "pid": pid})

    def _wait_status(self, pid: int, timeout: float) -> int:
        """The exit status of `pid` (left in place: the AgentProcess drops it once released)."""
        self._pump(lambda: pid in self._statuses, timeout, f"the exit of pid {pid}")
        return self._statuses[pid]

    # -- spawning ---------------------------------------------------------------------------------
    def _python_agent(self, spec: SpawnSpec) -> bool:
        argv = spec.argv
        return (
            spec.use_zygote
            and len(argv) >= 2
            and argv[0] in (sys.executable, os.path.realpath(sys.executable))
            and not argv[1].startswith("-")
        )

    def _agent_ids(self, spec: SpawnSpec) -> tuple[int, int, list[int]] | None:
        if not (self._root and spec.sandboxed):
            return None
        uid = _UID_BASE + ((os.getpid() & 0xFFF) << 16) + (spec.agent_id & 0xFFFF) + 1
        return uid, uid, [_UID_BASE]

    def _open_socket(self, path: str) -> None:
        """Let agents' uids connect to the kernel socket: group AGENT_GID, mode 0660 (only sandboxes that
        bind it can reach it, and the kernel still authenticates every connection)."""
        st = os.stat(path)
        if (path, st.st_ino) in self._socket_modes:
            return
        os.chown(path, -1, _UID_BASE)
        os.chmod(path, 0o660)
        self._socket_modes.add((path, st.st_ino))

    def _binds(self, spec: SpawnSpec, python: bool) -> list[tuple[str, bool]]:
        """This agent's binds beyond the shared base set: its script, ro_paths, PYTHONPATH, cwd, rw_paths
        and the kernel socket (the file alone, so other sockets beside it stay invisible)."""
        extra = [*spec.ro_paths]
        extra += [p for p in spec.env.get("PYTHONPATH", "").split(os.pathsep) if p.startswith("/")]
        # the program's and the script's directories (any absolute path to a file on the command line)
        extra += [os.path.dirname(a) for a in spec.argv if a.startswith("/") and os.path.isfile(a)]
        if python:
            extra.append(os.path.dirname(os.path.abspath(spec.argv[1])))
        if spec.cwd:
            extra.append(spec.cwd)
        binds = [
            (p, False)
            for p in _minimal([p for p in extra if os.path.lexists(p)])
            if not _covered(p, self._base_set)
        ]
        binds += [(p, True) for p in spec.rw_paths if os.path.exists(p)]
        if spec.socket_path:
            binds.append((spec.socket_path, True))
        return binds

    def spawn(self, spec: SpawnSpec, on_start: Callable[[int], None] | None = None) -> AgentProcess:
        """Start one agent; returns once it is running. Raises SpawnError naming what failed.
        `on_start(pid)` is called (on this thread) with the pid of the agent's init as soon as the
        zygote hands it the plan, before the agent runs; the spawn can still fail after it."""
        if self._closed:
            raise SpawnError("launcher is closed")
        if not isinstance(spec, SpawnSpec):
            raise SpawnError(f"spawn: expected a SpawnSpec, got {type(spec).__name__}")
        if spec.socket_path and not os.path.exists(spec.socket_path):
            raise SpawnError(f"socket_path {spec.socket_path!r} does not exist")
        if spec.cwd and not os.path.isdir(spec.cwd):
            raise SpawnError(f"cwd {spec.cwd!r} is not a directory")
        python = self._python_agent(spec)
        reasons: list[str] = []
        mechanism = self.capabilities["mechanism"]
        applied = {"memory_limit": False, "cpu_quota": False, "pids_limit": False}
        cgroup_rel = None
        if mechanism != "rlimit":
            cgroup_rel = f"{self._root_rel}/{spec.name}_{spec.agent_id}"
        else:
            reasons.append("no writable cgroup hierarchy; limits fall back to rlimits")
        ids = self._agent_ids(spec)
        rlimits: dict[str, int | list[int]] = {"RLIMIT_CORE": 0, "RLIMIT_NOFILE": list(fdlimit.for_agents())}
        if cgroup_rel is None:
            rlimits["RLIMIT_AS"] = spec.limits.memory
            applied["memory_limit"] = True
            if ids is not None:  # RLIMIT_NPROC counts per uid: meaningful only with the agent's own uid
                rlimits["RLIMIT_NPROC"] = spec.limits.max_pids
                applied["pids_limit"] = True
        seccomp_on = (
            spec.sandboxed
            and self.capabilities["seccomp"]
            and bool(self._ready is None or self._ready["seccomp"])
        )
        namespaces_ok = self.capabilities["namespaces"]
        userns = spec.sandboxed and not self._root and namespaces_ok
        if spec.sandboxed and not namespaces_ok:
            reasons.append("namespaces unavailable (not root, user namespaces not allowed)")
        if spec.sandboxed and ids is None and self._root is False:
            reasons.append(
                "not root: the agent keeps the launcher's uid (mapped as root of its user namespace)"
            )
        if spec.sandboxed and not self.capabilities["seccomp"]:
            reasons.append("libseccomp unavailable: no syscall filter")
        if ids is not None and spec.socket_path:
            try:
                self._open_socket(spec.socket_path)
            except OSError as exc:
                raise SpawnError(
                    f"socket_path {spec.socket_path!r}: cannot grant agents access ({exc})"
                ) from exc
        sandboxed = spec.sandboxed and namespaces_ok
        plan = {
            "agent_id": spec.agent_id,
            "argv": spec.argv,
            "env": spec.env,
            "cwd": spec.cwd or ("/tmp" if sandboxed else os.getcwd()),
            "sandboxed": sandboxed,
            "network": spec.network or not namespaces_ok,
            "userns": userns,
            "python": python,
            "seccomp": seccomp_on,
            "mechanism": mechanism,
            "cgroup_rel": cgroup_rel,
            "limits": dataclasses.asdict(spec.limits),
            "rlimits": rlimits,
            "uid": ids[0] if ids else None,
            "gid": ids[1] if ids else None,
            "groups": ids[2] if ids else [],
            "newroot": self._newroot,
            "base_binds": self._base_binds,
            "binds": self._binds(spec, python) if sandboxed else [],
            "tmp_bytes": _TMP_BYTES,
            "hostname": f"clove-{spec.name}_{spec.agent_id}"[:64],
        }
        stdout = spec.stdout_fd if spec.stdout_fd is not None else sys.stdout.fileno()
        stderr = spec.stderr_fd if spec.stderr_fd is not None else sys.stderr.fileno()
        try:
            with self._spawn_lock:  # one request in flight: the next reply is ours
                if sandboxed and spec.socket_path and [(spec.socket_path, True)] != self._slot_binds:
                    # slots prepared from now on bind this kernel socket ahead: one agent bind fewer
                    self._slot_binds = [(spec.socket_path, True)]
                    send(self._control, {"op": "slot_binds", "binds": self._slot_binds})
                send(self._control, {"op": "spawn", "plan": plan}, [stdout, stderr])
                while True:
                    self._pump(lambda: bool(self._replies), 30.0, "the spawn")
                    message, fds = self._replies.popleft()
                    if message["op"] != "starting":
                        break
                    if on_start is not None:
                        on_start(message["pid"])
        except (SpawnError, OSError) as exc:
            raise SpawnError(f"spawn of {spec.name!r}: {exc}") from exc
        if message["op"] == "error":
            raise SpawnError(f"spawn of {spec.name!r} failed: {message['error']}")
        if len(fds) < 2:  # the socket dropped them (MSG_CTRUNC): this process is out of descriptors
            self._abandon(message["pid"], fds)
            raise SpawnError(
                f"spawn of {spec.name!r} failed: the kernel process is out of file descriptors"
                f" ({fdlimit.describe()}), so the agent's pidfd and release pipe were lost; it was killed"
            )
        group = cgroups.attach(message["cgroup"]) if message["cgroup"] else None
        applied.update(message["applied"])
        namespaces = {k: sandboxed for k in ("pid", "mnt", "uts", "ipc")}
        namespaces["net"] = not plan["network"]
        namespaces["user"] = userns
        limit_mechanism = {
            "memory": mechanism if applied["memory_limit"] else None,
            "max_pids": mechanism if applied["pids_limit"] else None,
            "cpu_quota": mechanism if applied["cpu_quota"] else None,
        }
        fully = sandboxed and all(applied.values()) and seccomp_on and group is not None
        if not spec.sandboxed:
            reasons.append("sandboxed=false requested")
        isolation: dict[str, Any] = {
            "fully_isolated": fully,
            "namespaces": namespaces,
            "cgroups": {"available": group is not None, **applied},
            "mechanism": mechanism,
            "limits": limit_mechanism,
            "seccomp": seccomp_on,
            "uid": plan["uid"],
            "zygote": python,
            "warm_slot": message["warm"],
            "init": self.capabilities["init"] if sandboxed else None,
        }
        if group is not None:
            isolation["cgroup_path"] = group.rel
        if reasons and not fully:
            isolation["degraded_reason"] = "; ".join(reasons)
        agent = AgentProcess(self, spec, message["pid"], fds[0], fds[1], group, isolation)
        self._agents[agent.pid] = agent
        return agent

    def close(self) -> None:
        """Kill and reap every agent this launcher started, stop the zygote, remove cgroups and temp dirs."""
        if self._closed:
            return
        self._closed = True
        agents = list(self._agents.values())
        for agent in agents:
            agent._signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        for agent in agents:
            with contextlib.suppress(SpawnError, OSError):
                agent.kill(timeout=max(0.0, deadline - time.monotonic()))
        self._control.close()
        try:
            self._zygote.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._zygote.kill()
            self._zygote.wait()
        self._remove_left_groups()
        for d in self._cleanup_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)

    def _remove_left_groups(self) -> None:
        """Groups a zygote killed before its own cleanup left in our tag (a warm slot's, an agent's whose
        exit it never reported): their processes die with the zygote's lifeline; the groups would not."""
        mechanism = self.capabilities["mechanism"]
        names = set()
        for tag_dir in self._tag_dirs:
            with contextlib.suppress(OSError):
                names.update(e.name for e in os.scandir(tag_dir) if e.is_dir())
        for name in sorted(names):
            rel = f"{self._root_rel}/{name}"
            cgroups.attach({"mechanism": mechanism, "rel": rel, "mount": self._v2 or ""}).remove()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
