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

    table = ChildTable(tmp_path)  # reads its kernel's own start time once, here
    monkeypatch.setattr(childtable, "start_time", counted)
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


def _table(path, kernel_pid: int, kernel_start: object, agent_pid: int) -> None:
    path.write_text(
        json.dumps(
            {
                "kernel_pid": kernel_pid,
                "kernel_start": kernel_start,
                "agents": [{"id": 1, "name": "x", "pid": agent_pid, "start_time": start_time(agent_pid)}],
            }
        )
    )


def test_a_kernel_pid_taken_by_another_process_does_not_keep_its_table(tmp_path):
    """With pid_max 32768 a dead kernel's pid is soon another process's: its start time tells them apart,
    so the dead kernel's agents are reaped, while a live kernel's are left alone."""
    agent = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        parent = os.getppid()
        _table(tmp_path / "kernel-live-1.json", parent, start_time(parent), agent.pid)
        assert ChildTable(tmp_path).reap_stale() == []  # its kernel lives: nothing is touched
        assert agent.poll() is None and (tmp_path / "kernel-live-1.json").exists()
        _table(tmp_path / "kernel-reused-1.json", parent, start_time(parent) - 1, agent.pid)
        (tmp_path / "kernel-live-1.json").unlink()
        reaped = ChildTable(tmp_path).reap_stale()
        assert [r["pid"] for r in reaped] == [agent.pid] and reaped[0]["kernel_pid"] == parent
        assert agent.wait(5) == -signal.SIGKILL
        assert list(tmp_path.glob("kernel-*.json")) == []
    finally:
        agent.kill()
        agent.wait()


def test_a_table_with_a_bad_kernel_start_is_dropped_untouched(tmp_path):
    agent = subprocess.Popen(["sleep", "60"])
    try:
        _table(tmp_path / "kernel-bad-1.json", 999999, "yesterday", agent.pid)
        _table(tmp_path / "kernel-bad-2.json", 999999, [1], agent.pid)
        assert ChildTable(tmp_path).reap_stale() == []
        assert agent.poll() is None and list(tmp_path.glob("kernel-*.json")) == []
    finally:
        agent.kill()
        agent.wait()


def test_a_spawn_is_on_disk_before_its_answer_and_a_kill_is_written_once_after_it(
    tmp_path, agent_dir, raw_client, monkeypatch
):
    """A kernel killed right after answering SPAWN must find the agent in its table; a KILL rewrites the
    table once, after it is answered (a stale row is harmless), and not also when it stops watching
    the agent (those rows had not changed)."""
    sleeper = agent_dir / "sleeper.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    with Kernel(str(tmp_path / "k.sock"), child_table_dir=tmp_path / "tables") as k:
        events: list[str] = []
        save, complete = k.children.save, k._complete
        monkeypatch.setattr(
            k.children, "save", lambda rows: (save(rows), events.append(f"save {[r['name'] for r in rows]}"))
        )
        monkeypatch.setattr(
            k,
            "_complete",
            lambda conn, op, *rest: (events.append(f"answer {Op(op).name}"), complete(conn, op, *rest)),
        )
        c = raw_client(k.socket_path)
        reply = c.call(Op.SPAWN, {"name": "a", "script": str(sleeper), "sandboxed": False})
        assert events == ["save ['a']", "answer SPAWN"]
        on_disk = json.loads(k.children.path.read_text())["agents"]
        assert [(row["name"], row["pid"]) for row in on_disk] == [("a", reply["pid"])]
        events.clear()
        assert c.call(Op.KILL, {"id": reply["id"]})["killed"] is True
        deadline = time.monotonic() + 5
        while len(events) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events == ["answer KILL", "save []"]
        assert json.loads(k.children.path.read_text())["agents"] == []
