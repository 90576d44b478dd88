"""The fork server: a pre-imported interpreter that forks sandboxed agents on request.

Forking this warm process costs ~1 ms where a cold interpreter costs ~40 ms, and it keeps fork() out
of the (possibly threaded) kernel process. It is a child subreaper, so every agent's init lands here:
the zygote reaps them, reports exit statuses, and hands the launcher a pidfd opened while the process
could not yet have been reaped (no pid-reuse race). When the launcher's end of the control socket
closes - the launcher closed it or its process died - the zygote kills what is left, removes the
cgroups and exits, so a crashed kernel leaves nothing behind.

Control messages are JSON on a SOCK_SEQPACKET socketpair; descriptors travel with SCM_RIGHTS.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from . import child, seccomp_policy
from . import syscalls as sc
from .cgroups import Cgroup, attach

MAX_MESSAGE = 1 << 20
SPAWN_TIMEOUT = 10.0


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket, max_fds: int = 4) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and its descriptors, (None, []) at EOF."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


class Zygote:
    def __init__(self, control: socket.socket, preload: list[str]) -> None:
        self.control = control
        self.inits: dict[int, Cgroup | None] = {}  # init pid -> its cgroup (None without cgroups)
        self.seccomp: bytes | None = None
        self.newroot: str | None = None  # the launcher's mount-point dir, removed if we outlive it
        for name in preload:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
        with contextlib.suppress(ImportError, OSError):
            self.seccomp = seccomp_policy.compile_program()
        gc.collect()
        gc.freeze()  # children never collect (and so never copy-on-write) the pre-imported heap
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wake_w)

    def serve(self) -> None:
        send(self.control, {"op": "ready", "pid": os.getpid(), "seccomp": self.seccomp is not None})
        while True:
            try:
                ready, _, _ = select.select([self.control, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_r, 4096)
                self.reap()
            if self.control in ready:
                message, fds = recv(self.control)
                if message is None:
                    self.shutdown()
                    return
                try:
                    self.spawn(message["plan"], fds)
                finally:
                    for fd in fds:
                        os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
            except ChildProcessError:
                return
            if info is None:
                return
            status = info.si_status + 128 if info.si_code != os.CLD_EXITED else info.si_status
            if info.si_pid in self.inits:
                del self.inits[info.si_pid]
                send(self.control, {"op": "exit", "pid": info.si_pid, "status": status})

    def spawn(self, plan: dict[str, Any], fds: list[int]) -> None:
        self.newroot = plan["newroot"]
        stdio = (os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), fds[0], fds[1])
        status_r, status_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        try:
            setup_pid = os.fork()
            if setup_pid == 0:
                child.setup(plan, status_w, stdio, self.seccomp if plan["seccomp"] else None)
        finally:
            os.close(status_w)
            os.close(stdio[0])
        lines = self._read_status(status_r)
        os.close(status_r)
        os.waitpid(setup_pid, 0)  # after this, init has been reparented to us
        pid = next((int(line[4:]) for line in lines if line.startswith("pid ")), None)
        errors = [line[6:] for line in lines if line.startswith("error ")]
        if pid is None or errors:
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            send(
                self.control,
                {"op": "error", "error": "; ".join(errors) or "setup ended without starting the agent"},
            )
            return
        pidfd = os.pidfd_open(pid)
        self.inits[pid] = attach(plan["cgroup"]) if plan["cgroup"] else None
        try:
            send(self.control, {"op": "spawned", "pid": pid}, [pidfd])
        finally:
            os.close(pidfd)

    @staticmethod
    def _read_status(fd: int) -> list[str]:
        """Lines from the status pipe until every writer has closed it (the agent is running)."""
        data = b""
        deadline = time.monotonic() + SPAWN_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return [
                    *data.decode(errors="replace").splitlines(),
                    f"error timed out after {SPAWN_TIMEOUT}s",
                ]
            chunk = os.read(fd, 65536)
            if not chunk:
                return data.decode(errors="replace").splitlines()
            data += chunk

    def shutdown(self) -> None:
        """The launcher is gone: kill every agent tree, reap, remove their cgroups and the launcher's
        own directories (a closed launcher has removed them already; a crashed one has not)."""
        for pid, group in self.inits.items():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if group is not None:
                group.kill_all()
        for pid, group in list(self.inits.items()):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            if group is not None:
                parents = {os.path.dirname(d) for d in group.dirs}
                group.remove()
                for parent in parents:
                    with contextlib.suppress(OSError):
                        os.rmdir(parent)
        self.inits.clear()
        if self.newroot:
            with contextlib.suppress(OSError):
                os.rmdir(self.newroot)


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[0]))
    Zygote(control, argv[1:]).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
