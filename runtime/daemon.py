"""The kernel as a long-lived daemon: `clove-gym kernel start|stop|status|run`.

`start` launches `python -m clove_gym.runtime.daemon` detached and waits until the socket answers; the pid
is taken from the socket itself (SO_PEERCRED), so `stop` and `status` work even without the pid file.
`--scheduler` picks where the THINK queue's decisions come from (runtime/sched_backend.py); a backend
that cannot start stops the kernel from starting, and `start` prints the kernel's reason.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

from clove_gym.runtime.kernel import DEFAULT_SOCKET, Kernel, KernelError
from clove_gym.runtime.sched_backend import SOFTWARE, SchedulerBackendError, spec_name

_PEERCRED = struct.Struct("3i")
START_TIMEOUT_S = 15.0
BACKEND_START_TIMEOUT_S = 600.0  # a first `rtl` start compiles the Verilator harness (~20-60 s here)


def default_socket() -> str:
    return os.environ.get("CLOVE_SOCKET") or DEFAULT_SOCKET


def kernel_pid(path: str) -> int | None:
    """Pid of the kernel listening on `path`, read from the peer credentials of a connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return _PEERCRED.unpack(s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))[0]
    except OSError:
        return None
    finally:
        s.close()


def start(
    path: str,
    trace: str | None,
    audit: str | None,
    scheduler: str | None = None,
    timeout: float | None = None,
) -> int:
    if timeout is None:
        try:
            software = spec_name(scheduler) == SOFTWARE
        except SchedulerBackendError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        timeout = START_TIMEOUT_S if software else BACKEND_START_TIMEOUT_S
    pid = kernel_pid(path)
    if pid is not None:
        print(
            f"error: a live kernel already listens on {path} (pid {pid}); not replacing it", file=sys.stderr
        )
        return 1
    argv = [sys.executable, "-m", "clove_gym.runtime.daemon", "--socket", path]
    argv += ["--trace", trace] if trace else []
    argv += ["--audit", audit] if audit else []
    argv += ["--scheduler", scheduler] if scheduler else []
    log_path = path + ".log"
    with open(log_path, "ab") as log:
        log_start = log.tell()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"error: the kernel exited with status {proc.returncode}; see {log_path}", file=sys.stderr)
            print(_tail(log_path, log_start), file=sys.stderr)
            return 1
        if kernel_pid(path) == proc.pid:
            print(f"kernel started: pid {proc.pid}, socket {path} (log {log_path})")
            return 0
        time.sleep(0.05)
    proc.terminate()
    print(f"error: the kernel did not answer on {path} within {timeout:g}s; see {log_path}", file=sys.stderr)
    return 1


def stop(path: str, timeout: float = 15.0) -> int:
    pid = kernel_pid(path)
    if pid is None:
        print(f"error: no kernel answers on {path}", file=sys.stderr)
        return 1
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return 0
    try:
        signal.pidfd_send_signal(fd, signal.SIGTERM)
        # the pidfd turns readable when that process exits: polling the pid could see another
        # process that took it meanwhile
        if select.select([fd], [], [], timeout)[0]:
            print(f"kernel stopped (pid {pid})")
            return 0
    except ProcessLookupError:
        return 0  # it exited between pidfd_open and the signal
    finally:
        os.close(fd)
    print(f"error: kernel pid {pid} did not stop within {timeout:g}s", file=sys.stderr)
    return 1


def status(path: str) -> int:
    pid = kernel_pid(path)
    if pid is None:
        stale = " (stale socket file)" if os.path.exists(path) else ""
        print(f"not running: {path}{stale}")
        return 3
    print(f"running: pid {pid}, socket {path}")
    return 0


def _tail(log_path: str, offset: int, lines: int = 5) -> str:
    """The last lines this start wrote to the log (the kernel's reason for exiting)."""
    try:
        with open(log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def run(path: str, trace: str | None, audit: str | None, scheduler: str | None = None) -> int:
    """Serve in the foreground until SIGTERM/SIGINT."""
    try:
        kernel = Kernel(path, trace_path=trace, audit_path=audit, scheduler=scheduler)
        kernel.bind()
    except (KernelError, SchedulerBackendError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    for signo in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, lambda _signo, _frame: kernel.request_stop())
    queue = getattr(kernel.llm, "scheduler", None)
    print(
        f"kernel serving on {path} (pid {os.getpid()}, THINK scheduler {getattr(queue, 'name', SOFTWARE)})",
        flush=True,
    )
    kernel.serve_forever()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `kernel start|stop|status|run` to the top-level CLI."""
    k = subparsers.add_parser("kernel", help="run the kernel as a daemon", description=__doc__)
    cmds = k.add_subparsers(dest="kernel_command", metavar="COMMAND", required=True)
    for name, text in (
        ("start", "start a detached kernel and wait until it answers"),
        ("stop", "stop the kernel on the socket (SIGTERM, agents stopped in order)"),
        ("status", "say whether a kernel answers on the socket (exit 3 when not)"),
        ("run", "serve in the foreground until SIGTERM or Ctrl-C"),
    ):
        p = cmds.add_parser(name, help=text, description=text)
        p.add_argument(
            "--socket", default=None, help=f"socket path (default: $CLOVE_SOCKET or {DEFAULT_SOCKET})"
        )
        if name in ("start", "run"):
            p.add_argument("--trace", help="record a workload trace to this file (.clvtrace)")
            p.add_argument("--audit", help="mirror the audit log to this JSONL file")
            _scheduler_option(p)
        p.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    path = args.socket or default_socket()
    if args.kernel_command == "start":
        return start(path, args.trace, args.audit, args.scheduler)
    if args.kernel_command == "stop":
        return stop(path)
    if args.kernel_command == "status":
        return status(path)
    return run(path, args.trace, args.audit, args.scheduler)


def _scheduler_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scheduler",
        metavar="NAME[:K=V,...]",
        help="where THINK decisions come from: software (default, or $CLOVE_SCHEDULER), rtl (Verilated"
        " scheduler), fpga (board), model (golden model), or another installed backend; options e.g."
        " rtl:params=reports/hw/params.json or fpga:port=/dev/ttyUSB1",
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m clove_gym.runtime.daemon")
    parser.add_argument("--socket", default=None)
    parser.add_argument("--trace")
    parser.add_argument("--audit")
    _scheduler_option(parser)
    args = parser.parse_args()
    return run(args.socket or default_socket(), args.trace, args.audit, args.scheduler)


if __name__ == "__main__":
    sys.exit(main())
