"""Shared fixtures (tests/runtime/sandbox, tests/security): one launcher per module, a runner for agents."""

from __future__ import annotations

import os
import select
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clove_gym.runtime.sandbox import AgentProcess, Launcher, SpawnSpec


@dataclass
class Ran:
    status: int | None
    out: str
    err: str
    agent: AgentProcess


def _read_all(fds: list[int], timeout: float) -> list[bytes]:
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    open_fds = list(fds)
    deadline = time.monotonic() + timeout
    while open_fds and time.monotonic() < deadline:
        ready, _, _ = select.select(open_fds, [], [], max(0.0, deadline - time.monotonic()))
        for fd in ready:
            data = os.read(fd, 65536)
            if data:
                chunks[fd].append(data)
            else:
                open_fds.remove(fd)
    return [b"".join(chunks[fd]) for fd in fds]


class Runner:
    def __init__(self, launcher: Launcher, tmp: Path) -> None:
        self.launcher = launcher
        self.tmp = tmp
        self.next_id = 1
        self.scripts = 0

    def script(self, code: str) -> str:
        self.scripts += 1
        path = self.tmp / f"script_{self.scripts}.py"
        path.write_text(textwrap.dedent(code))
        return str(path)

    def start(self, code: str, **kw: Any) -> tuple[AgentProcess, int, int]:
        """Spawn a Python agent; returns it and the read ends of its stdout and stderr pipes."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        agent_id = self.next_id
        path = self.script(code)
        self.next_id += 1
        spec = SpawnSpec(
            agent_id=agent_id,
            name=kw.pop("name", f"t{agent_id}"),
            argv=kw.pop("argv", [sys.executable, path]),
            env=kw.pop("env", {"PATH": "/usr/bin:/bin"}),
            cwd=kw.pop("cwd", None),
            stdout_fd=out_w,
            stderr_fd=err_w,
            **kw,
        )
        try:
            agent = self.launcher.spawn(spec)
        finally:
            os.close(out_w)
            os.close(err_w)
        return agent, out_r, err_r

    def run(self, code: str, timeout: float = 30.0, **kw: Any) -> Ran:
        agent, out_r, err_r = self.start(code, **kw)
        out, err = _read_all([out_r, err_r], timeout)
        os.close(out_r)
        os.close(err_r)
        status = agent.wait(timeout)
        if status is None:
            agent.kill(timeout=0)
        return Ran(status, out.decode(), err.decode(), agent)


@pytest.fixture(scope="module")
def launcher() -> Iterator[Launcher]:
    if os.geteuid() != 0:
        pytest.skip("needs root: namespaces, cgroups and uid switching are exercised for real")
    with Launcher(root_cgroup_name="clove-gym-test") as launcher:
        yield launcher


@pytest.fixture
def runner(launcher: Launcher) -> Iterator[Runner]:
    # Not tmp_path: pytest's base dir is 0700 and agents run under their own uid, so scripts need a
    # world-readable directory of their own.
    tmp = Path(tempfile.mkdtemp(prefix="clove-sbx-test-"))
    tmp.chmod(0o755)
    yield Runner(launcher, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
