"""Baseline programs: C sources in benchmarks/baseline/, compiled on demand with the system `cc`.

Binaries are cached under $XDG_CACHE_HOME/clove-gym/bench (default ~/.cache/...), named by a hash of the
source and compiler flags, so an edited source is rebuilt and nothing compiled is ever committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

SOURCES = Path(__file__).resolve().parent / "baseline"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-Werror")


class BaselineError(RuntimeError):
    """A baseline could not be built or run (the message says why)."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clove-gym" / "bench"


def build(name: str) -> Path:
    """Path of the compiled `baseline/<name>.c`, compiling it first if the cache lacks this version."""
    src = SOURCES / f"{name}.c"
    if not src.is_file():
        raise BaselineError(f"no baseline source {src}")
    wanted = os.environ.get("CC")
    cc = (
        shutil.which(wanted) if wanted else shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    )
    if cc is None:
        where = f"CC={wanted} is not an executable" if wanted else "no cc, gcc or clang on PATH"
        raise BaselineError(f"cannot build the C baselines: {where}")
    digest = hashlib.sha256(src.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:16]
    out = cache_dir() / f"{name}-{digest}"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    res = subprocess.run([cc, *CFLAGS, "-o", str(tmp), str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BaselineError(f"compiling {src} failed:\n{res.stderr.strip()}")
    os.replace(tmp, out)  # atomic: a concurrent build never sees a half-written binary
    return out


class EchoServer:
    """`uds_pingpong serve`: the raw C Unix-socket peer that stands where the kernel stands."""

    def __init__(self, socket_path: str, cpu: int | None) -> None:
        self.socket_path = socket_path
        argv = [str(build("uds_pingpong")), "serve", socket_path, str(-1 if cpu is None else cpu)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline() if self.proc.stdout else b""
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.stop()
            raise BaselineError(f"uds_pingpong serve did not start: {err.strip()}")

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def ping_client(
    socket_path: str,
    cpu: int | None,
    *,
    conns: int = 1,
    rounds: int = 0,
    seconds: float = 0.0,
    size: int = 64,
) -> dict[str, Any]:
    """Run `uds_pingpong client` (closed-loop NOOP frames) and return its JSON result.

    Keys: conns, size, samples, elapsed_ns, min/p50/p90/p99/p999/max_ns, counts (per connection)."""
    argv = [
        str(build("uds_pingpong")),
        "client",
        socket_path,
        str(-1 if cpu is None else cpu),
        str(conns),
        str(rounds),
        str(seconds),
        str(size),
    ]
    limit = 120 + seconds + rounds * conns * 0.001
    started = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    if res.returncode != 0:
        raise BaselineError(
            f"uds_pingpong client failed after {time.monotonic() - started:.1f}s: {res.stderr.strip()}"
        )
    return json.loads(res.stdout)
