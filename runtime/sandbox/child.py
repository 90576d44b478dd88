"""What runs between the zygote's fork and the agent's first instruction.

Three stages, each in its own process:

* **setup** (forked by the zygote): new session (no controlling terminal), joins the cgroups, unshares
  the namespaces, raises loopback, forks `init` and reports its pid on the status channel, then exits.
  `init` is reparented to the zygote (a child subreaper), which reaps it and reports its exit status.
* **init** (pid 1 of the new PID namespace): builds the filesystem view, sets the hostname, forks the
  agent, then forwards termination signals and reaps orphans until the agent exits, and exits with the
  agent's status. Its death takes every other process of the namespace with it. Once the agent is
  forked, init execs the native `clove-init` where it is built (`_reap_until` is its Python twin).
* **agent**: drops to its own unprivileged uid, applies rlimits and the seccomp filter, then either runs
  the Python script in this pre-imported interpreter or execs the program.

A *warm slot* runs setup and the agent-independent half of init ahead of time and then waits for a
plan, which takes the slow steps (cgroup migration, namespace creation, forks, mounts) off the spawn
path. Errors before the agent runs are written to the status channel ("error <message>") and end the process
with status 127, so the launcher can raise SpawnError with the reason. Without a PID namespace
(`sandboxed=False`) setup forks the agent directly.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import pkgutil  # runpy.run_path imports it on first use: 2-5 ms in every agent otherwise
import resource
import runpy
import select
import shutil
import signal
import socket
import sys
import threading
import traceback
from typing import Any, NoReturn

from . import rootfs, seccomp_policy
from . import syscalls as sc

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_INIT_SIGNALS = (*_FORWARDED, signal.SIGCHLD)  # blocked in init from before the agent's fork on


def _report(fd: int, line: str) -> None:
    os.write(fd, line.encode("utf-8", "replace") + b"\n")


def _fail(fd: int, what: str, exc: BaseException) -> NoReturn:
    try:
        _report(fd, f"error {what}: {exc}")
    finally:
        os._exit(127)


def _status_of(wait_status: int) -> int:
    """Exit code, or 128+signo for a death by signal (the shell's convention)."""
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.waitstatus_to_exitcode(wait_status)


_FD_CEILING = 1 << 30  # above any descriptor (close_range clamps); RLIMIT_NOFILE may be infinite (-1)
LIFELINE_FD = 4  # read end of a pipe only the zygote writes to: EOF means the zygote is gone
MAX_TREES = 64  # agent binds a warm slot takes as detached mount trees (more: the zygote spawns cold)


def _detach(status_fd: int, stdio: tuple[int, int, int], lifeline: int) -> int:
    """New session without a terminal, the given stdio, the status channel as fd 3, the zygote's
    lifeline as fd 4, nothing else open (the zygote's control socket and its end of the lifeline)."""
    signal.set_wakeup_fd(-1)  # the zygote's wakeup pipe is about to be closed
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    keep = [os.dup(status_fd), os.dup(lifeline)]  # out of the way of the dup2s below
    for i, fd in enumerate((*stdio, *keep)):
        os.dup2(fd, i)
    for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
        if fd > LIFELINE_FD:
            with contextlib.suppress(OSError):
                os.close(fd)
    return 3


def _enter(cgroup_join: list[str], flags: int, userns: bool, network: bool) -> None:
    for path in cgroup_join:
        with open(path, "w") as f:
            f.write("0")
    if flags:
        sc.unshare(flags)
    if userns:
        _map_ids()
    if not network:
        sc.loopback_up()


def _namespace_flags(sandboxed: bool, userns: bool, network: bool) -> int:
    flags = 0
    if sandboxed:
        flags |= sc.CLONE_NEWPID | sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
        if userns:
            flags |= sc.CLONE_NEWUSER
    if not network:
        flags |= sc.CLONE_NEWNET
    return flags


def setup(
    plan: dict[str, Any], status_fd: int, stdio: tuple[int, int, int], lifeline: int, seccomp: bytes | None
) -> NoReturn:
    """Stage 1 of a cold spawn, in the zygote's fresh child. Never returns."""
    try:
        status_fd = _detach(status_fd, stdio, lifeline)
        flags = _namespace_flags(plan["sandboxed"], plan["userns"], plan["network"])
        _enter(plan["cgroup_join"], flags, plan["userns"], plan["network"])
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the launcher
        _fail(status_fd, "sandbox setup", exc)
    pid = os.fork()
    if pid == 0:
        if plan["sandboxed"]:
            program = _open_init(status_fd, plan["init_program"])
            try:
                rootfs.prepare(plan["newroot"], plan["base_binds"], plan["tmp_bytes"])
            except BaseException as exc:  # noqa: BLE001
                _fail(status_fd, "sandbox filesystem", exc)
            _init(plan, status_fd, seccomp, program)
        _agent(plan, status_fd, seccomp)
    _report(status_fd, f"pid {pid}")
    os._exit(0)


def warm_slot(slot: dict[str, Any], sock_fd: int, lifeline: int, seccomp: bytes | None) -> NoReturn:
    """Stage 1 of a warm slot: everything an agent's sandbox needs that does not depend on the agent
    (session, cgroup, namespaces, loopback, the shared part of the filesystem, even the agent's process),
    done ahead of time. The waiting agent process then takes the plan and its stdout/stderr from
    `sock_fd`, finishes the filesystem and becomes the agent."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        status_fd = _detach(sock_fd, (null, null, null), lifeline)
        _enter(slot["cgroup_join"], _namespace_flags(True, False, False), False, False)
    except BaseException as exc:  # noqa: BLE001
        _fail(3, "warm slot setup", exc)
    pid = os.fork()
    if pid == 0:
        program = _open_init(status_fd, slot["init_program"])
        try:
            binds = [*slot["base_binds"], *((path, writable) for path, writable in slot["slot_binds"])]
            rootfs.prepare(slot["newroot"], binds, slot["tmp_bytes"])
            rootfs.pivot(slot["newroot"])  # the agent's binds come later as detached trees
        except BaseException as exc:  # noqa: BLE001
            _fail(status_fd, "warm slot filesystem", exc)
        agent, mask = _fork_agent(program)
        if agent == 0:
            _waiting_agent(status_fd, seccomp, slot)
        os.close(status_fd)
        _become_init(agent, program, mask)
    try:  # a pidfd opened here names init for sure: init cannot be reaped before we exit
        pidfd = os.pidfd_open(pid)
        socket.send_fds(socket.socket(fileno=status_fd), [f"pid {pid}\n".encode()], [pidfd])
    except BaseException as exc:  # noqa: BLE001
        _fail(status_fd, "warm slot pidfd", exc)
    os._exit(0)


def _rehearse(slot: dict[str, Any]) -> None:
    """Do, while the slot waits, what an agent's start will do, so the memory it writes is this
    process's own by then: a forked interpreter shares the zygote's pages copy-on-write, and a start
    otherwise takes ~400 page faults (allocator pools, reference counts of shared objects), a few
    microseconds each on a VM. Touches only what a start touches, not the whole heap."""
    env = dict(os.environ)
    json.loads(json.dumps({**slot, "env": env, "argv": [sys.executable, "-"], "binds": slot["base_binds"]}))
    os.environ.clear()
    os.environ.update(env)
    pkgutil.get_importer(os.getcwd())
    exec(compile("import os, sys, time\nx = [str(i) for i in range(64)]\n", "<rehearsal>", "exec"), {})
    # the same calls the start makes, each with no effect: a remount keeping the root writable,
    # handlers and limits set to what they are, an empty descriptor range
    sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NODEV)
    for signo in (*_FORWARDED, signal.SIGCHLD, signal.SIGINT, signal.SIGPIPE):
        signal.signal(signo, signal.getsignal(signo))
    resource.setrlimit(resource.RLIMIT_CORE, resource.getrlimit(resource.RLIMIT_CORE))
    os.closerange(_FD_CEILING, _FD_CEILING)
    ctypes.create_string_buffer(b"\0" * 4096)


def _waiting_agent(status_fd: int, seccomp: bytes | None, slot: dict[str, Any]) -> NoReturn:
    try:
        _rehearse(slot)
        _report(status_fd, "ready")
        ctl = socket.socket(fileno=status_fd)
        data, fds, _flags, _addr = socket.recv_fds(ctl, 1 << 20, 2 + MAX_TREES)
        ctl.detach()
        if not data:
            os._exit(0)  # the zygote is gone
        plan = json.loads(data)
        trees = [(fd, *tree) for fd, tree in zip(fds[2:], plan["trees"], strict=True)]
        rootfs.attach(trees)  # the agent's own binds, cloned by the zygote; the root was pivoted ahead
        for fd in fds[2:]:
            os.close(fd)
        socket.sethostname(plan["hostname"])
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
    except BaseException as exc:  # noqa: BLE001
        _fail(status_fd, "warm slot", exc)
    _agent(plan, status_fd, seccomp)


def _map_ids() -> None:
    """Map namespace root to our own ids (the only mapping an unprivileged user may write)."""
    uid, gid = os.getuid(), os.getgid()
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _init(plan: dict[str, Any], status_fd: int, seccomp: bytes | None, program: int | None) -> NoReturn:
    """Stage 2: pid 1 of the agent's namespaces."""
    try:
        rootfs.finish(plan["newroot"], plan["binds"])
        socket.sethostname(plan["hostname"])
    except BaseException as exc:  # noqa: BLE001
        _fail(status_fd, "sandbox filesystem", exc)
    agent, mask = _fork_agent(program)
    if agent == 0:
        _agent(plan, status_fd, seccomp)
    os.close(status_fd)
    _become_init(agent, program, mask)


def _open_init(status_fd: int, path: str | None) -> int | None:
    """The native init program, opened while the host tree is still in view (the root is pivoted
    before init execs it); None: init stays this interpreter."""
    if path is None:
        return None
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        _fail(status_fd, "native init", exc)


def _fork_agent(program: int | None) -> tuple[int, set[signal.Signals]]:
    """Fork the agent with init's signals blocked in init from here on, so none that arrives before
    init handles them is lost (a namespace's init gets only the signals it catches or blocks). The
    agent gets back the mask it had and none of init's descriptors."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _INIT_SIGNALS)
    agent = os.fork()
    if agent == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if program is not None:
            os.close(program)
    return agent, mask


def _become_init(agent: int, program: int | None, mask: set[signal.Signals]) -> NoReturn:
    """Exec the native init in this process's place, or be its Python twin. Should the exec fail (out
    of memory, say), the twin takes over: the agent runs by then, and killing it would be worse."""
    if program is not None:
        try:
            os.execve(program, ["clove-init", str(agent), str(LIFELINE_FD)], {})
        except OSError as exc:
            _report(2, f"clove-init: exec failed ({exc}); init stays in Python")
    _reap_until(agent, mask)


def _reap_until(agent: int, mask: set[signal.Signals]) -> NoReturn:
    """Be pid 1: forward termination signals to the agent, reap orphans, exit with the agent's status.
    If the zygote dies (EOF on the lifeline), exit at once: the kernel then kills the whole namespace,
    so not even a SIGKILLed zygote leaves agents behind. The twin of native/init/clove_init.c."""

    def forward(signo: int, _frame: object) -> None:
        try:
            os.kill(agent, signo)
        except ProcessLookupError:
            pass

    for signo in _FORWARDED:
        signal.signal(signo, forward)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what arrived while blocked is handled now
    while True:
        try:
            while True:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                if pid == agent:
                    os._exit(_status_of(wait_status))
        except ChildProcessError:
            os._exit(0)
        ready = select.select([LIFELINE_FD, wake_r], [], [])[0]
        if LIFELINE_FD in ready:
            os._exit(128 + signal.SIGKILL)
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)


def _agent(plan: dict[str, Any], status_fd: int, seccomp: bytes | None) -> NoReturn:
    """Stage 3: become the agent."""
    try:
        os.closerange(3, status_fd)  # close_range(2): no /proc listing on the spawn path
        os.closerange(status_fd + 1, _FD_CEILING)
        for signo in (*_FORWARDED, signal.SIGCHLD):
            signal.signal(signo, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it at startup
        for name, value in plan["rlimits"].items():  # a limit, or a [soft, hard] pair
            resource.setrlimit(getattr(resource, name), value if isinstance(value, list) else (value, value))
        if plan["uid"] is not None:
            os.setgroups(plan["groups"])
            os.setresgid(plan["gid"], plan["gid"], plan["gid"])
            os.setresuid(plan["uid"], plan["uid"], plan["uid"])  # also clears every capability
        os.chdir(plan["cwd"])
        if plan["seccomp"] and seccomp is not None:
            seccomp_policy.install(seccomp)
        else:
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        env = plan["env"]
        if not plan["python"]:
            os.set_inheritable(status_fd, False)  # closes on a successful exec, reports success
            program = plan["argv"][0]
            resolved = program if "/" in program else shutil.which(program, path=env.get("PATH", os.defpath))
            if resolved is None:
                raise FileNotFoundError(f"{program!r} not found on PATH")
            os.execve(resolved, plan["argv"], env)
    except BaseException as exc:  # noqa: BLE001
        _fail(status_fd, "agent start", exc)
    os.close(status_fd)
    _run_python(plan["argv"][1:], env)


def _run_python(argv: list[str], env: dict[str, str]) -> NoReturn:
    """Run a script as `python script args...` would, in this already-initialised interpreter."""
    os.environ.clear()
    os.environ.update(env)
    script = argv[0]
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    cwd = os.getcwd()
    sys.path[:] = [os.path.dirname(os.path.abspath(script)), *extra, *(p for p in sys.path if p and p != cwd)]
    sys.argv = list(argv)
    atexit._clear()
    code: int = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught exception ends the agent like the interpreter would
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads, as at exit
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(code & 0xFF)
