"""A kernel killed with SIGKILL leaves its agents listed on disk; the next kernel reaps them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
from clove_gym.runtime import childtable
from clove_gym.runtime.childtable import ChildTable, start_time
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import Op

CRASHING_KERNEL = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from clove_gym.runtime.kernel import Kernel
    from clove_gym.runtime.client import Client
    k = Kernel(sys.argv[1], child_table_dir=Path(sys.argv[2])).start()
    with Client(sys.argv[1]) as c:
        r = c.spawn("orphan", sys.argv[3], sandboxed=False)
    print(r["pid"], flush=True)
    time.sleep(60)
""")


def test_agents_of_a_killed_kernel_are_reaped_by_the_next(tmp_path, agent_dir, raw_client):
    sleeper = agent_dir / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    sleeper.chmod(0o644)
    tables = tmp_path / "tables"
    sock = str(tmp_path / "k.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_KERNEL, sock, str(tables), str(sleeper)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        orphan = int(proc.stdout.readline())
        assert psutil.pid_exists(orphan)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert psutil.pid_exists(orphan)  # survived its kernel: an orphan nobody tracks in memory
    assert len(list(tables.glob("kernel-*.json"))) == 1
    with Kernel(sock, child_table_dir=tables) as k:  # stale socket replaced, orphan reaped
        c = raw_client(k.socket_path)
        reaped = c.call(Op.GET_AUDIT_LOG, {"category": "AGENT_LIFECYCLE"})["entries"]
        assert [e["event_type"] for e in reaped] == ["AGENT_REAPED"]
        assert reaped[0]["details"]["pid"] == orphan and reaped[0]["agent_name"] == "orphan"
        deadline = time.monotonic() + 5
        while psutil.pid_exists(orphan) and psutil.Process(orphan).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "orphan still running"
            time.sleep(0.02)
        c.close()
    assert list(tables.glob("kernel-*.json")) == []  # a clean stop leaves no table


def test_a_reused_pid_is_never_killed(tmp_path):
    table = ChildTable(tmp_path)
    me = os.getpid()
    (tmp_path / "kernel-999999-1.json").write_text(
        f'{{"kernel_pid": 999999, "agents": [{{"id": 1, "name": "x", "pid": {me}, '
        f'"start_time": {start_time(me) + 1}}}]}}'
    )
    (tmp_path / "kernel-999998-1.json").write_text('{"kernel_pid": 99')  # torn by a crash
    assert table.reap_stale() == []
    assert list(tmp_path.glob("kernel-9*.json")) == []


def test_start_times_are_read_once_per_agent_process(tmp_path, monkeypatch):
    """The table is rewritten at every start and exit; with hundreds of agents, re-reading every
    agent's /proc entry each time would make each spawn O(agents) on the kernel's thread."""
    reads: list[int] = []

    def counted(pid: int) -> int:
        reads.append(pid)
        return 1000 + pid

    monkeypatch.setattr(childtable, "start_time", counted)
    table = ChildTable(tmp_path)
    rows = [{"id": i, "name": f"a{i}", "pid": 100 + i} for i in range(50)]
    for n in range(1, 51):
        table.save(rows[:n])
    assert sorted(reads) == [100 + i for i in range(50)]
    saved = json.loads(table.path.read_text())["agents"]
    assert [r["start_time"] for r in saved] == [1100 + i for i in range(50)]
    table.save(rows[1:])  # an agent ended: it leaves the table and the cache
    assert 100 not in table._starts


def test_the_table_lives_in_memory_unless_told_otherwise(monkeypatch, tmp_path):
    """It is rewritten on every spawn and exit, on the kernel's loop: a tmpfs, never a disk filesystem
    whose freed blocks are trimmed synchronously (50+ ms stalls measured)."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setattr(childtable, "_SHM", str(shm))
    assert childtable.default_dir().parent == shm
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    assert childtable.default_dir().parent == tmp_path / "run"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(childtable, "_SHM", str(tmp_path / "absent"))
    assert str(childtable.default_dir().parent) == childtable.tempfile.gettempdir()
