"""The fork server: a pre-imported interpreter that forks sandboxed agents on request.

Forking this warm process costs ~1 ms where a cold interpreter costs ~40 ms, and it keeps fork() out
of the (possibly threaded) kernel process. It also keeps a small pool of *warm slots*: processes that
already sit in their own cgroup and namespaces, pivoted into their root with the shared part of the
filesystem (and the kernel socket) mounted, so a spawn only renames the cgroup, writes the limits and
hands the slot its plan and the agent's other binds as detached mount trees; slots prepare and wait
at nice 10, so the pool refills mostly on spare CPU. It is a child subreaper, so every agent's init
lands here: the zygote reaps them (also while a spawn is in flight), removes the cgroup, and only then
reports the exit, so an exit report means everything is released. It hands the launcher a pidfd opened
while the process could not yet have been reaped (no pid-reuse race). When the launcher's
end of the control socket closes - the launcher closed it or its process died - the zygote kills what
is left, removes the cgroups and exits, so a crashed kernel leaves nothing behind.

Control messages are JSON on SOCK_SEQPACKET socketpairs; descriptors travel with SCM_RIGHTS.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import itertools
import json
import math
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clove_gym.runtime import fdlimit

from . import cgroups, child, rootfs, seccomp_policy
from . import syscalls as sc
from .spec import Limits

_Watched = Any  # a descriptor, or an object with fileno()

MAX_MESSAGE = 1 << 20
_PEEK = bytearray(1)  # recv()'s peek target; what lands in it is never read, so threads may share it
SPAWN_TIMEOUT = 10.0
_MAX_SLOT_FAILURES = 3
_REFILL_IDLE = 0.001  # slots prepare at low priority, so refilling early costs a spawn little
SLOT_NICE = 10  # warm slots' nice value while they prepare and wait


def readable(watched: Iterable[_Watched], timeout: float | None) -> list[_Watched]:
    """Those of `watched` (descriptors or objects with fileno()) readable, at EOF or closed within
    `timeout` seconds (None: no limit), as select() would say. poll(), not select(): select() refuses
    descriptors above 1023, and a zygote or kernel holds a few per agent."""
    poller = select.poll()
    by_fd: dict[int, _Watched] = {}
    for w in watched:
        fd = w if isinstance(w, int) else w.fileno()
        by_fd[fd] = w
        poller.register(fd, select.POLLIN)
    ms = None if timeout is None else math.ceil(max(0.0, timeout) * 1000)
    return [by_fd[fd] for fd, _events in poller.poll(ms)]


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket, max_fds: int = 4) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and its descriptors, (None, []) at EOF (a peer that closed with unread data resets).
    The message's length is peeked first and exactly that is read: a MAX_MESSAGE buffer per message is
    an mmap, page faults and an munmap each time (24 us against 6 us per message)."""
    try:
        size = sock.recv_into(_PEEK, 1, socket.MSG_PEEK | socket.MSG_TRUNC)  # the whole length, 0 at EOF
        data, fds, _flags, _addr = socket.recv_fds(sock, min(max(size, 1), MAX_MESSAGE), max_fds)
    except ConnectionResetError:
        return None, []
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


def read_status(
    sock: socket.socket | int,
    timeout: float = SPAWN_TIMEOUT,
    wake: tuple[int, Callable[[], None]] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> list[str]:
    """Status lines from a child until every holder of its end has closed it (the agent is running).
    `wake` = (fd, handler): the handler runs whenever fd turns readable meanwhile (the zygote keeps
    reaping other agents while one spawns, so their exits are not held up by it; a cold spawn holds
    reaping only until its init's pid is read). `on_line` sees each line as it arrives."""
    fd = sock if isinstance(sock, int) else sock.fileno()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    watched = [fd] if wake is None else [fd, wake[0]]
    while True:
        remaining = deadline - time.monotonic()
        ready = readable(watched, remaining) if remaining > 0 else []
        if not ready:
            return [*lines, f"error timed out after {timeout}s"]
        if fd not in ready:  # the status first: an exit reaped before it was read would lose its pid
            wake[1]()  # type: ignore[index]  # only the wake fd can be ready here
            continue
        try:
            chunk = os.read(fd, 65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return lines
        for line in chunk.decode(errors="replace").splitlines():
            lines.append(line)
            if on_line is not None:
                on_line(line)


@dataclass
class Slot:
    sock: socket.socket
    group: cgroups.Cgroup | None
    setup_pid: int
    binds: frozenset[tuple[str, bool, tuple[int, int]]] = frozenset()  # made ahead: path, writable, inode
    init_pid: int | None = None  # set once its pid line is read, if init was not reaped before it
    pidfd: int = -1  # init's, from setup: setup is init's parent, so it cannot name another process
    ready: bool = False


class Zygote:
    def __init__(self, control: socket.socket, preload: list[str]) -> None:
        self.control = control
        self.inits: dict[int, cgroups.Cgroup | None] = {}  # agent init pid -> its cgroup
        # agent init pid -> write end of its release pipe: a byte there after its exit report lets the
        # kernel wait on this one agent's fd instead of sharing the control socket among threads
        self.released: dict[int, int] = {}
        self.slots: dict[int, Slot] = {}  # slot socket fd -> slot
        self.config: dict[str, Any] = {"pool_size": 0}
        self.slot_binds: list[tuple[str, bool]] = []  # binds new slots make ahead (the kernel socket)
        self.slot_failures = 0
        self.doomed: list[cgroups.Cgroup] = []  # groups to remove once their zombies are reaped
        self.setups: set[int] = set()  # stage-1 processes (they exit once init is forked)
        # inits handed their plan but not yet reported spawned -> exit status if reaped meanwhile:
        # a quick agent can end while its spawn is still being read, and its exit must not be lost
        self.pending: dict[int, int | None] = {}
        self.serial = itertools.count()
        self.seccomp: bytes | None = None
        compat = str(Path(__file__).resolve().parents[1] / "_compat")  # our clove_sdk; a real one wins
        if compat not in sys.path:
            sys.path.append(compat)
        self.preload_failures: dict[str, str] = {}
        for name in preload:
            try:
                importlib.import_module(name)
            except Exception as exc:  # an agent imports it itself then: slower, not wrong
                self.preload_failures[name] = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(ImportError, OSError):
            self.seccomp = seccomp_policy.compile_program()
        gc.collect()
        gc.freeze()  # children never collect (and so never copy-on-write) the pre-imported heap
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        self.lifeline_r, self.lifeline_w = os.pipe()  # we only ever hold the write end open
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)

    def serve(self) -> None:
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the launcher went away while we were reporting to it
        self.shutdown()

    def _serve(self) -> None:
        send(self.control, {"op": "ready", "pid": os.getpid(), "seccomp": self.seccomp is not None})
        while True:
            # refill once the control socket has been quiet for a moment: forking a slot delays a
            # spawn that arrives meanwhile by ~1 ms; the slot then prepares itself at low priority
            idle = _REFILL_IDLE if len(self.slots) < self.config["pool_size"] else None
            ready = readable([self.control, self.wake_r, *self.slots], idle)  # poll() retries on EINTR
            if not ready:
                self.refill()
            if self.wake_r in ready:
                self.wake()
            for fd in ready:
                if fd in self.slots:
                    self.slot_message(self.slots[fd])
            if self.control in ready:
                message, fds = recv(self.control)
                if message is None:
                    return
                try:
                    if message["op"] == "config":
                        self.config = message
                    elif message["op"] == "slot_binds":
                        self.slot_binds = [(path, writable) for path, writable in message["binds"]]
                        for slot in list(self.slots.values()):  # made for another socket: make anew
                            if {p for p, _, _ in slot.binds} - {p for p, _ in self.slot_binds}:
                                self.drop_slot(slot, kill=True)
                    elif message["op"] == "spawn":
                        self.spawn(message["plan"], fds)
                    elif message["op"] == "abandon":
                        self.abandon(message["pid"])
                finally:
                    for fd in fds:
                        os.close(fd)

    # -- exits ------------------------------------------------------------------------------------
    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            if info is None:
                return
            status = info.si_status + 128 if info.si_code != os.CLD_EXITED else info.si_status
            if info.si_pid in self.setups:
                self.setups.discard(info.si_pid)
            elif info.si_pid in self.inits:
                self.exited(info.si_pid, self.inits.pop(info.si_pid), status)
            elif info.si_pid in self.pending:
                self.pending[info.si_pid] = status  # reported by _finish, after the spawn
            for slot in list(self.slots.values()):
                if slot.init_pid == info.si_pid:  # a waiting slot died: never hand it out
                    self.drop_slot(slot, kill=False)
            self.doomed = [g for g in self.doomed if not g.remove(timeout=0)]

    def exited(self, pid: int, group: cgroups.Cgroup | None, status: int) -> None:
        """An agent's init is reaped, so its PID namespace and every process in it are gone: remove its
        cgroup here, off the kernel's thread, then report. The report means "all released" unless the
        group was still busy (then it is retried from the reap loop)."""
        oom_kills, removed = 0, True
        if group is not None:
            with contextlib.suppress(OSError):
                oom_kills = group.oom_kills()
            removed = group.remove(timeout=0)
            if not removed:
                self.doomed.append(group)
        report = {"op": "exit", "pid": pid, "status": status, "oom_kills": oom_kills, "removed": removed}
        send(self.control, report)
        fd = self.released.pop(pid, None)
        if fd is not None:
            # a byte, not just EOF: a slot forked meanwhile holds a copy of the fd until it closes it
            with contextlib.suppress(OSError):  # the launcher closed its end: it no longer waits
                os.write(fd, b"x")
            os.close(fd)

    def wake(self) -> None:
        self.drain_wake()
        self.reap()

    def drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_r, 4096)

    # -- warm slots -------------------------------------------------------------------------------
    def refill(self) -> None:
        """Start slots until the pool is full (each prepares itself in the background). Each start costs
        the zygote ~2 ms (cgroup, fork): a spawn request or an exit that arrives meanwhile is served
        before the next one, so it waits for one start at most, not for a whole pool's."""
        cfg = self.config
        while len(self.slots) < cfg["pool_size"] and self.slot_failures < _MAX_SLOT_FAILURES:
            if readable([self.control, self.wake_r], 0):
                return  # the loop serves it and refills once it is quiet again
            group = None
            if cfg["mechanism"] != "rlimit":
                group = cgroups.new(
                    cfg["mechanism"], f"{cfg['root_rel']}/warm-{next(self.serial)}", cfg["v2_mount"]
                )
                try:
                    group.create(Limits())
                except OSError as exc:
                    group.remove(timeout=0)
                    self.slot_failed(f"cgroup: {exc}")
                    continue
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            ahead = {(path, writable, ino) for path, writable in self.slot_binds if (ino := _inode(path))}
            binds = [(path, writable) for path, writable, _ino in ahead]
            slot_cfg = {**cfg, "cgroup_join": group.join_files if group else [], "slot_binds": binds}
            pid = os.fork()
            if pid == 0:
                ours.close()
                # prepared at a low priority, so a slot in the making yields the CPU to spawns and
                # agents; not SCHED_IDLE: a starved slot holding a kernel lock (namespace_sem during its
                # mounts) would stall the spawns that need it, and the pool would starve under load
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, 0, SLOT_NICE)
                child.warm_slot(slot_cfg, theirs.fileno(), self.lifeline_r, self.seccomp)
            theirs.close()
            self.setups.add(pid)
            self.slots[ours.fileno()] = Slot(ours, group, pid, frozenset(ahead))

    def slot_message(self, slot: Slot) -> None:
        try:
            data, fds, _flags, _addr = socket.recv_fds(slot.sock, 65536, 1)
        except ConnectionResetError:
            data, fds = b"", []
        for fd in fds:  # init's pidfd travels with its pid line
            if slot.pidfd >= 0:
                os.close(fd)
            else:
                slot.pidfd = fd
        for line in data.decode(errors="replace").splitlines():
            if line.startswith("pid "):
                self.reap_setup(slot)  # after this, the slot's init is our child
                # unless it ended and a reap took it for a stranger before this line was read: its
                # pid may be another process's by now, so it is never used (the socket's EOF follows)
                if slot.pidfd >= 0 and _our_child(slot.pidfd):
                    slot.init_pid = int(line[4:])
            elif line == "ready":
                slot.ready = True
        if not data or data.startswith(b"error"):
            self.drop_slot(slot, kill=True)
            self.slot_failed(data.decode(errors="replace") or "slot exited")

    def reap_setup(self, slot: Slot) -> None:
        """Wait for the slot's setup unless a reap took it already (then its pid is no longer ours)."""
        if slot.setup_pid in self.setups:
            self.setups.discard(slot.setup_pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(slot.setup_pid, 0)

    def slot_failed(self, why: str) -> None:
        self.slot_failures += 1
        if self.slot_failures == _MAX_SLOT_FAILURES:
            print(f"clove-gym zygote: warm slots disabled after repeated failures ({why})", file=sys.stderr)

    def drop_slot(self, slot: Slot, kill: bool) -> None:
        self.slots.pop(slot.sock.fileno(), None)
        slot.sock.close()
        if kill:
            if slot.pidfd >= 0:
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(slot.pidfd, signal.SIGKILL)
            if slot.group is not None:
                slot.group.kill_all()  # also a slot whose init pid we have not heard of yet
        self.reap_setup(slot)  # init is ours once setup is reaped
        if slot.pidfd >= 0:
            with contextlib.suppress(ChildProcessError):  # reaped already, or still setup's
                os.waitid(os.P_PIDFD, slot.pidfd, os.WEXITED)
            os.close(slot.pidfd)
            slot.pidfd = -1
        # a v1 group stays busy until its last task is reaped: retried from the reap loop
        if slot.group is not None and not slot.group.remove(timeout=0.05):
            self.doomed.append(slot.group)

    def take_slot(self, plan: dict[str, Any]) -> Slot | None:
        if not plan["sandboxed"] or plan["network"] or plan["userns"]:
            return None  # slots are prepared for the common case only
        if plan["mechanism"] != self.config.get("mechanism") or len(plan["binds"]) > child.MAX_TREES:
            return None
        wanted = {source for source, _writable in plan["binds"]}
        for slot in self.slots.values():
            # a slot's binds made ahead must all be the agent's own: never another kernel's socket
            if slot.ready and slot.init_pid is not None and {p for p, _, _ in slot.binds} <= wanted:
                del self.slots[slot.sock.fileno()]
                return slot
        return None

    # -- spawning ---------------------------------------------------------------------------------
    def abandon(self, pid: int) -> None:
        """Kill an agent the launcher could not take (its descriptors were lost on the way). By pid: an
        init in `inits` is not reaped yet (reaping removes it), so the pid cannot be another's. Its exit
        is then reaped and reported as any other."""
        if pid in self.inits:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def spawn(self, plan: dict[str, Any], fds: list[int]) -> None:
        if len(fds) < 2:  # dropped by the socket (MSG_CTRUNC): we are out of descriptors
            send(self.control, {"op": "error", "error": _out_of_fds("the agent's stdout and stderr")})
            return
        limits = Limits(**plan["limits"])
        slot = self.take_slot(plan)
        try:
            if slot is not None:
                self.spawn_warm(plan, fds, slot, limits)
            else:
                self.spawn_cold(plan, fds, limits)
        except OSError as exc:
            send(self.control, {"op": "error", "error": f"{type(exc).__name__}: {exc}"})

    def _group_for(
        self, plan: dict[str, Any], limits: Limits
    ) -> tuple[cgroups.Cgroup | None, dict[str, bool]]:
        if plan["cgroup_rel"] is None:
            return None, {}
        group = cgroups.new(plan["mechanism"], plan["cgroup_rel"], self.config.get("v2_mount"))
        try:
            return group, group.create(limits)
        except OSError as exc:
            group.remove(timeout=0)
            raise OSError(exc.errno, f"cgroup setup failed: {exc}") from exc

    def spawn_warm(self, plan: dict[str, Any], fds: list[int], slot: Slot, limits: Limits) -> None:
        group, applied = slot.group, {}
        pid, pidfd = slot.init_pid, slot.pidfd
        assert pid is not None
        trees: list[int] = []
        self.pending[pid] = None  # from here on, an exit reaped during the spawn is kept
        try:
            if group is not None:
                group.rename(plan["cgroup_rel"])
                applied = group.set_limits(limits)
            for member in slot_pids(pid, group):  # back to normal priority before it runs the agent
                with contextlib.suppress(ProcessLookupError):
                    os.setpriority(os.PRIO_PROCESS, member, 0)
            # the slot no longer sees the host tree: its agent's binds travel as detached mount trees
            targets = []
            ahead = {path for path, _writable, _ino in slot.binds}
            for source, writable in plan["binds"]:
                if (source, writable, _inode(source)) in slot.binds:
                    continue  # made ahead, and still the same file (a kernel socket made anew is not)
                if os.path.lexists(source):  # as rootfs.add_binds: a vanished path is not bound
                    trees.append(sc.clone_tree(source, rootfs.tree_attr(writable)))
                    targets.append((source, os.path.isdir(source), source in ahead))
            send(slot.sock, {**plan, "trees": targets}, [*fds, *trees])
            self.starting(pid)
        except OSError:
            slot.sock.close()
            self.pending.pop(pid, None)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
            if group is not None:
                group.remove()
            raise
        finally:
            for fd in trees:
                os.close(fd)
        lines = read_status(slot.sock, wake=(self.wake_r, self.wake))
        slot.sock.close()
        self._finish(plan, lines, pid, pidfd, group, applied, warm=True)

    def spawn_cold(self, plan: dict[str, Any], fds: list[int], limits: Limits) -> None:
        group, applied = self._group_for(plan, limits)
        plan = {
            **plan,
            "cgroup_join": group.join_files if group else [],
            "init_program": self.config["init_program"],
        }
        stdio = (os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), fds[0], fds[1])
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            setup_pid = os.fork()
            if setup_pid == 0:
                child.setup(plan, status_w, stdio, self.lifeline_r, self.seccomp)
        finally:
            os.close(status_w)
            os.close(stdio[0])
        self.setups.add(setup_pid)
        pidfd = -1
        deferred = False  # an exit woke us before init's pid was read: reaped once it is known
        failed: list[str] = []

        def on_wake() -> None:
            nonlocal deferred
            if pidfd >= 0:
                self.wake()
            else:  # init's pid is not read yet: were setup and init both gone, a reap now would take
                # init for a stranger, losing its exit and its pid before pidfd_open
                self.drain_wake()
                deferred = True

        def pid_line(line: str) -> None:
            nonlocal pidfd, deferred
            if not line.startswith("pid ") or pidfd >= 0:
                return
            pid = int(line[4:])
            try:
                pidfd = os.pidfd_open(pid)  # init is at worst a zombie: nothing was reaped since
            except OSError as exc:
                failed.append(f"error pidfd_open of init {pid}: {exc}")
                return
            self.pending[pid] = None
            self.starting(pid)
            if deferred:
                deferred = False
                self.reap()

        lines = read_status(status_r, wake=(self.wake_r, on_wake), on_line=pid_line)
        os.close(status_r)
        with contextlib.suppress(ChildProcessError):  # unless reap() got it meanwhile
            os.waitpid(setup_pid, 0)  # after this, init has been reparented to us
        self.setups.discard(setup_pid)
        pid = next((int(line[4:]) for line in lines if line.startswith("pid ")), None)
        self._finish(plan, [*lines, *failed], pid, pidfd, group, applied, warm=False)
        if deferred:  # no pid came: whatever exited meanwhile is someone else's
            self.reap()

    def starting(self, pid: int) -> None:
        """Tell the launcher the pid of the init about to start the agent, before the agent runs: the
        kernel can then name the agent's first connection at once instead of holding it until the spawn
        is reported (its ancestry leads to this pid, which stays ours until we reap it)."""
        send(self.control, {"op": "starting", "pid": pid})

    def _finish(
        self,
        plan: dict[str, Any],
        lines: list[str],
        pid: int | None,
        pidfd: int,
        group: cgroups.Cgroup | None,
        applied: dict[str, bool],
        warm: bool,
    ) -> None:
        errors = [line[6:] for line in lines if line.startswith("error ")]
        early = self.pending.pop(pid, None) if pid is not None else None  # exit reaped meanwhile
        release = (-1, -1)
        if pid is not None and not errors:
            try:
                release = os.pipe2(os.O_CLOEXEC)
            except OSError:
                errors.append(_out_of_fds("the agent's release pipe"))
        if pid is None or errors:
            if pid is not None and early is None:  # not reaped yet, so the pid is still init's
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            if pidfd >= 0:
                os.close(pidfd)
            if group is not None:
                group.remove()
            send(
                self.control,
                {"op": "error", "error": "; ".join(errors) or "setup ended without starting the agent"},
            )
            return
        self.inits[pid] = group
        reply = {"op": "spawned", "pid": pid, "warm": warm, "applied": applied}
        reply["cgroup"] = group.describe() if group else None
        release_r, self.released[pid] = release
        try:
            send(self.control, reply, [pidfd, release_r])
        finally:
            os.close(pidfd)
            os.close(release_r)
        if early is not None:  # the agent ran and ended before its spawn was reported: now its exit
            self.exited(pid, self.inits.pop(pid), early)

    def shutdown(self) -> None:
        """The launcher is gone: kill every agent tree and slot, reap, remove their cgroups and the
        launcher's own directories (a closed launcher has removed them already; a crashed one has not)."""
        for slot in list(self.slots.values()):
            self.drop_slot(slot, kill=True)
        # with the init of a spawn cut short by the launcher's exit, unless it is reaped already
        self.inits.update({pid: None for pid, status in self.pending.items() if status is None})
        for pid, group in self.inits.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if group is not None:
                group.kill_all()
        for pid, group in list(self.inits.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            if group is not None:
                group.remove()
        self.inits.clear()
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        for group in self.doomed:
            group.remove()
        for d in self.config.get("cleanup_dirs", []):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _out_of_fds(what: str) -> str:
    return f"the zygote is out of file descriptors ({fdlimit.describe()}): no room for {what}"


def _our_child(pidfd: int) -> bool:
    """Whether the process is our child and not reaped yet (running or a zombie)."""
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def slot_pids(init_pid: int, group: cgroups.Cgroup | None) -> list[int]:
    """Host pids of a warm slot: its init and the waiting agent (from the cgroup, else from /proc)."""
    if group is not None:
        return group.pids()
    try:
        with open(f"/proc/{init_pid}/task/{init_pid}/children") as f:
            return [init_pid, *map(int, f.read().split())]
    except OSError:
        return [init_pid]


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[0]))
    Zygote(control, argv[1:]).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
