"""clove-init (native/init/clove_init.c) against its Python twin (`_reap_until` in
runtime/sandbox/child.py): the same agent in either sandbox ends with the same status and output,
forwarded signals reach it, orphans are reaped, and pid 1 really is the program asked for."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clove_gym import native
from clove_gym.runtime.sandbox import Launcher, SpawnSpec

INITS = ("native", "python")
PATHS = ("warm", "cold")  # a warm slot execs clove-init ahead; a cold spawn once it forked the agent

EXIT_7 = "import sys; sys.exit(7)"
SEGV = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
# handlers for two forwarded signals; the test sends SIGUSR1 to init, then KILL sends SIGTERM
SIGNALS = """
import signal, sys, time
def usr1(*_):
    print("usr1", flush=True)
def term(*_):
    print("term", flush=True)
    sys.exit(42)
signal.signal(signal.SIGUSR1, usr1)
signal.signal(signal.SIGTERM, term)
print("ready", flush=True)
while True:
    time.sleep(1)
"""
# a grandchild orphaned to pid 1 exits; pid 1 must reap it (no zombie in the namespace)
ORPHAN = """
import json, os, time
if os.fork() == 0:
    if os.fork() == 0:
        os._exit(0)
    os._exit(0)
os.wait()
deadline = time.monotonic() + 5
while True:
    states = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except FileNotFoundError:
            pass  # reaped meanwhile
    if len(states) == 2 or time.monotonic() > deadline:  # init and this agent: the orphan is reaped
        break
    time.sleep(0.01)
print(json.dumps(sorted(states)))
"""


@pytest.fixture(scope="module")
def scripts() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the sandbox's PID namespace and its init are exercised for real")
    tmp = Path(tempfile.mkdtemp(prefix="clove-init-test-"))
    tmp.chmod(0o755)  # agents run under their own uid
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module", params=[(i, p) for i in INITS for p in PATHS], ids="-".join)
def sandbox(request, scripts) -> Iterator[tuple[Launcher, str, str]]:
    """(launcher, which init, which spawn path)."""
    init, path = request.param
    pool = 1 if path == "warm" else 0
    with Launcher(
        root_cgroup_name="clove-gym-test", pool_size=pool, native_init=init == "native"
    ) as launcher:
        yield launcher, init, path


_ids = iter(range(1, 1 << 30))


def start(sandbox: tuple[Launcher, str, str], scripts: Path, code: str):
    """Spawn `code` as a sandboxed Python agent by the sandbox's spawn path (a warm launcher's pool
    fills once it is idle: a cold start meanwhile is undone and tried again); returns the agent and
    the read end of its stdout."""
    launcher, _init, path = sandbox
    script = scripts / f"agent_{next(_ids)}.py"
    script.write_text(textwrap.dedent(code))
    deadline = time.monotonic() + 10
    while True:
        out_r, out_w = os.pipe()
        try:
            agent_id = next(_ids)
            spec = SpawnSpec(
                agent_id, f"i{agent_id}", [sys.executable, str(script)], {}, None, stdout_fd=out_w
            )
            agent = launcher.spawn(spec)
        finally:
            os.close(out_w)
        if agent.isolation["warm_slot"] is (path == "warm"):
            return agent, out_r
        agent.kill(timeout=0)
        os.close(out_r)
        assert time.monotonic() < deadline, f"no {path} spawn within 10 s"
        time.sleep(0.1)


def lines_until(fd: int, last: str | None, timeout: float = 10.0) -> list[str]:
    """Lines read from `fd` up to the line `last` (None: up to EOF); fails after `timeout` s."""
    data = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and select.select([fd], [], [], left)[0]:
        chunk = os.read(fd, 1)
        if not chunk:
            return data.decode().splitlines()
        data += chunk
        if last is not None and data.endswith(f"{last}\n".encode()):
            return data.decode().splitlines()
    raise AssertionError(f"no line {last!r} within {timeout} s; got {data!r}")


def read_out(fd: int) -> str:
    with os.fdopen(fd, "rb") as f:
        return f.read().decode()


def test_pid_1_is_the_init_asked_for(sandbox, scripts) -> None:
    _launcher, init, _path = sandbox
    agent, out = start(sandbox, scripts, "import time; time.sleep(30)")
    try:
        assert agent.isolation["init"] == init
        want = "clove-init" if init == "native" else os.path.basename(sys.executable)[:15]
        deadline = time.monotonic() + 5  # a cold init execs just after it forked the agent
        while (comm := Path(f"/proc/{agent.pid}/comm").read_text().strip()) != want:
            assert time.monotonic() < deadline, f"pid 1 is {comm!r}, not {want!r}"
            time.sleep(0.01)
        if init == "native":  # a few pages of its own, not a copy of the zygote's interpreter
            rss_kb = next(
                int(line.split()[1])
                for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
            assert rss_kb < 4096, f"clove-init holds {rss_kb} kB"
    finally:
        agent.kill(timeout=0)
        os.close(out)


@pytest.mark.parametrize(
    ("code", "status"), [(EXIT_7, 7), (SEGV, 128 + signal.SIGSEGV)], ids=["exit7", "segv"]
)
def test_the_agents_status_is_inits(sandbox, scripts, code, status) -> None:
    agent, out = start(sandbox, scripts, code)
    assert agent.wait(10) == status
    read_out(out)


def test_forwarded_signals_reach_the_agent(sandbox, scripts) -> None:
    agent, out = start(sandbox, scripts, SIGNALS)
    try:
        assert lines_until(out, "ready") == ["ready"]
        os.kill(agent.pid, signal.SIGUSR1)  # to init, from outside its namespace: it forwards it
        assert lines_until(out, "usr1") == ["usr1"]
        assert agent.kill(timeout=5) == 42  # SIGTERM, handled by the agent, not SIGKILL after 5 s
        assert lines_until(out, None) == ["term"]
    finally:
        agent.kill(timeout=0)
        os.close(out)


def test_orphans_are_reaped(sandbox, scripts) -> None:
    agent, out = start(sandbox, scripts, ORPHAN)
    assert agent.wait(10) == 0
    states = json.loads(read_out(out))
    assert "Z" not in states and len(states) == 2, states  # a zombie left means pid 1 did not reap it


def test_native_init_must_be_built_when_asked_for(monkeypatch) -> None:
    monkeypatch.setenv("CLOVE_GYM_NATIVE", "0")
    assert native.init_program() is None
    with pytest.raises(ValueError, match="native_init=True: clove-init is not built"):
        Launcher(root_cgroup_name="clove-gym-test", native_init=True)


def test_clove_init_refuses_bad_arguments() -> None:
    program = native.init_program()
    assert program is not None, "clove-init is not built"
    for argv in ([], ["x", "4"], ["12", "-1"], ["0", "4"], ["1", "2", "3"]):
        ran = subprocess.run([program, *argv], capture_output=True, text=True, timeout=5)
        assert ran.returncode == 127 and "usage: clove-init AGENT_PID LIFELINE_FD" in ran.stderr, argv
