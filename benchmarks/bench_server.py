"""A kernel in its own process, pinned to a CPU, for benchmarks and fault tests.

Running the kernel in a separate process keeps the measuring client's Python (and its GIL) out of the
kernel's way, lets the two be placed on CPUs independently, and lets tests SIGKILL it or read its RSS.

    python -m clove_gym.benchmarks.bench_server --socket P [--cpu N] [--trace F] [--audit F] [--python-plane]

prints one JSON line `{"pid", "native", "socket"}` once the socket listens, then serves until SIGTERM.
`KernelProcess` starts it and waits for that line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any


class KernelProcessError(RuntimeError):
    """The kernel child did not start (its stderr is in the message)."""


class KernelProcess:
    """`python -m clove_gym.benchmarks.bench_server` as a context manager. The kernel stops (SIGTERM, its
    clean shutdown: agents killed, zygote and cgroups gone) when the thread that started it dies, so a
    benchmark killed midway leaves no kernel behind; start it from a thread that outlives its use."""

    def __init__(
        self,
        socket_path: str,
        *,
        cpu: int | None = None,
        trace_path: str | None = None,
        audit_path: str | None = None,
        python_plane: bool = False,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        argv = [sys.executable, "-m", "clove_gym.benchmarks.bench_server", "--socket", socket_path]
        argv += ["--parent", str(os.getpid())]
        argv += ["--cpu", str(cpu)] if cpu is not None else []
        argv += ["--trace", trace_path] if trace_path else []
        argv += ["--audit", audit_path] if audit_path else []
        argv += ["--python-plane"] if python_plane else []
        self.socket_path = socket_path
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty kernel never blocks on it
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=cwd
        )
        line = self.proc.stdout.readline() if self.proc.stdout else b""
        if not line:
            self.proc.wait(timeout)
            raise KernelProcessError(
                f"kernel process exited with {self.proc.returncode}: {self.stderr_text().strip()}"
            )
        info: dict[str, Any] = json.loads(line)
        self.pid: int = info["pid"]
        self.native: bool = info["native"]

    def __enter__(self) -> KernelProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rss_bytes(self) -> int:
        """Resident set size of the kernel process, from /proc."""
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no cleanup (crash tests)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._close_pipes()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_pipes()
        return self.proc.returncode

    def stderr_text(self) -> str:
        """Everything the kernel process wrote to stderr so far."""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _close_pipes(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clove_gym.benchmarks.bench_server")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--cpu", type=int, default=None, help="pin the kernel (all its threads) to this CPU")
    parser.add_argument("--trace")
    parser.add_argument("--audit")
    parser.add_argument("--python-plane", action="store_true", help="use the pure-Python data plane")
    parser.add_argument("--parent", type=int, help="stop when this process (the starting thread) dies")
    args = parser.parse_args(argv)
    kernel: Any = None
    asked = False

    def stop(_signo: int, _frame: Any) -> None:
        nonlocal asked
        asked = True  # before the kernel exists: asked of it once it does
        if kernel is not None:
            kernel.request_stop()

    for signo in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signo, stop)
    if args.parent is not None:
        from clove_gym.runtime.sandbox.syscalls import PR_SET_PDEATHSIG, prctl

        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != args.parent:  # it died before the prctl took effect
            print(f"error: parent process {args.parent} is gone", file=sys.stderr)
            return 1
    if args.cpu is not None:  # before any thread exists, so every kernel thread inherits it
        os.sched_setaffinity(0, {args.cpu})
    from clove_gym.runtime.kernel import Kernel, KernelError

    try:
        kernel = Kernel(
            args.socket, trace_path=args.trace, audit_path=args.audit, use_native=not args.python_plane
        )
        kernel.bind()
    except (KernelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if asked:
        kernel.request_stop()  # serve_forever() then only cleans up
    print(json.dumps({"pid": os.getpid(), "native": kernel.native, "socket": args.socket}), flush=True)
    started = time.monotonic()
    kernel.serve_forever()
    print(f"kernel served {time.monotonic() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
