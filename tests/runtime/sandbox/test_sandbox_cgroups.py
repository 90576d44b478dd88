"""cgroup backends against the real hierarchies of this machine: v1 (memory, pids, cpu, freezer) and the
unified v2 hierarchy (here without controllers, which still has cgroup.freeze and cgroup.kill)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from clove_gym.runtime.sandbox import Limits, cgroups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create cgroups")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _join(group: cgroups.Cgroup, pid: int) -> None:
    for path in group.procs_files:
        with open(path, "w") as f:
            f.write(str(pid))


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _fork_into(group: cgroups.Cgroup, child_stays: bool) -> tuple[int, int]:
    """Fork a child that joins `group` through its join files and forks a sleeping grandchild; returns
    (child, grandchild). The child sleeps too, or exits at once when `child_stays` is false."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for path in group.join_files:
            with open(path, "w") as f:
                f.write("0")
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(30)
            os._exit(0)
        os.write(w, str(grandchild).encode())
        if child_stays:
            time.sleep(30)
        os._exit(0)
    os.close(w)
    grandchild = int(os.read(r, 32))
    os.close(r)
    return pid, grandchild


def test_v2_freeze_thaw_kill_and_remove_on_the_unified_hierarchy(sleeper) -> None:
    mount = cgroups.v2_mount()
    if mount is None:
        pytest.skip("no cgroup v2 hierarchy mounted")
    group = cgroups.CgroupV2(f"clove-gym-test/v2-{os.getpid()}/agent_1", mount)
    try:
        applied = group.create(Limits())
        available = set(open(os.path.join(mount, "cgroup.controllers")).read().split())
        assert applied["memory_limit"] == ("memory" in available)
        _join(group, sleeper.pid)
        assert group.pids() == [sleeper.pid]
        group.freeze()
        assert group.frozen()
        group.thaw()
        assert not group.frozen()
        group.freeze()
        group.kill_all()  # cgroup.kill: a frozen task dies too
        assert sleeper.wait(5) == -9
        assert group.remove()
        assert not os.path.exists(group.path)
        desc = group.describe()
        assert desc == {"mechanism": "cgroup2", "rel": group.rel, "mount": mount}
    finally:
        group.remove(timeout=0)
        for d in (os.path.dirname(group.path), os.path.dirname(os.path.dirname(group.path))):
            if os.path.isdir(d) and d != mount:
                try:
                    os.rmdir(d)
                except OSError:
                    pass


def test_v1_limits_rename_metrics_and_attach(sleeper) -> None:
    if not cgroups.v1_usable():
        pytest.skip("cgroup v1 memory/pids/cpu/freezer are not mounted writable here")
    parent = f"clove-gym-test/v1-{os.getpid()}"
    group = cgroups.CgroupV1(f"{parent}/warm-0")
    try:
        group.create(Limits())
        _join(group, sleeper.pid)
        group.rename(f"{parent}/agent_7")  # a warm slot becoming an agent: no task migration
        assert group.pids() == [sleeper.pid]
        assert group.set_limits(Limits(memory=1 << 30, max_pids=5)) == dict.fromkeys(
            ("memory_limit", "cpu_quota", "pids_limit"), True
        )
        m = group.metrics()
        assert (
            m["cgroup_path"] == f"{parent}/agent_7"
            and m["memory"]["max"] == 1 << 30
            and m["pids"] == {"current": 1, "max": 5}
        )
        copy = cgroups.attach(group.describe())  # what the zygote rebuilds after a launcher crash
        assert copy.dirs == group.dirs and copy.pids() == [sleeper.pid]
        copy.freeze()
        time.sleep(0.05)
        assert group.frozen() and _state(sleeper.pid) in ("D", "S", "T")
        copy.kill_all()  # SIGKILL then thaw: a frozen v1 task dies once thawed
        assert sleeper.wait(5) == -9
        assert copy.remove() and not any(os.path.exists(d) for d in group.dirs)
    finally:
        group.remove(timeout=0)
        for c in cgroups.V1_CONTROLLERS:
            d = os.path.join(cgroups.CGROUP_ROOT, c, parent)
            if os.path.isdir(d):
                os.rmdir(d)


def test_wait_for_times_out_naming_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match="the impossible"):
        cgroups.wait_for(lambda: False, "the impossible", timeout=0.01)


def test_v1_a_forked_process_joins_every_hierarchy_through_tasks() -> None:
    """The child joins by writing "0" to `tasks` (no global threadgroup lock, see join_files); what it
    forks afterwards is in the group too, in every controller's hierarchy."""
    if not cgroups.v1_usable():
        pytest.skip("cgroup v1 memory/pids/cpu/freezer are not mounted writable here")
    group = cgroups.CgroupV1(f"clove-gym-test/join-{os.getpid()}")
    try:
        group.create(Limits())
        assert [os.path.basename(p) for p in group.join_files] == ["tasks"] * len(group.dirs)
        pid, grandchild = _fork_into(group, child_stays=True)
        assert sorted(group.pids()) == sorted([pid, grandchild])
        for member in (pid, grandchild):
            with open(f"/proc/{member}/cgroup") as f:
                lines = [line.rstrip("\n").split(":", 2) for line in f]
            in_group = {c for _n, ctrls, path in lines if path == "/" + group.rel for c in ctrls.split(",")}
            assert {os.path.relpath(d, cgroups.CGROUP_ROOT).split("/")[0] for d in group.dirs} <= in_group
        group.kill_all()
        os.waitpid(pid, 0)
    finally:
        assert group.remove()


def test_v1_remove_reads_no_pid_list_of_an_empty_group_and_kills_stragglers(monkeypatch) -> None:
    """An empty group (the zygote removes it after reaping init) goes by rmdir alone: reading a v1
    cgroup.procs builds a pid list that the rmdir must then flush through a kworker. A busy group still
    gets its stragglers killed and is removed once they are gone."""
    if not cgroups.v1_usable():
        pytest.skip("cgroup v1 memory/pids/cpu/freezer are not mounted writable here")
    empty = cgroups.CgroupV1(f"clove-gym-test/empty-{os.getpid()}")
    busy = cgroups.CgroupV1(f"clove-gym-test/busy-{os.getpid()}")
    try:
        empty.create(Limits())
        dirs = list(empty.dirs)
        with monkeypatch.context() as m:
            m.setattr(empty, "pids", lambda: pytest.fail("remove() read the pid list of an empty group"))
            assert empty.remove(timeout=0)
        assert not any(os.path.exists(d) for d in dirs)

        busy.create(Limits())
        dirs = list(busy.dirs)
        pid, orphan = _fork_into(busy, child_stays=False)  # an orphan in the group, reaped by pid 1, not us
        os.waitpid(pid, 0)
        assert busy.pids() == [orphan]
        assert busy.remove(timeout=5.0)
        assert busy.dirs == [] and not any(os.path.exists(d) for d in dirs)
        with contextlib.suppress(FileNotFoundError):  # gone, or a zombie until pid 1 gets to it
            assert _state(orphan) in ("Z", "X")
    finally:
        empty.remove(timeout=0)
        busy.remove(timeout=0)


def test_group_writes_treat_a_group_removed_meanwhile_as_gone(monkeypatch) -> None:
    """The ENODEV window is too narrow to hit on demand, so the error is injected where the kernel
    raises it: the write into the group's files. Any other error still propagates."""

    def failing(code: int):
        def write(path: str, value: str) -> None:
            raise OSError(code, os.strerror(code), path)

        return write

    groups = [
        cgroups.CgroupV1("clove-gym-test/never-created"),
        cgroups.CgroupV2("clove-gym-test/never-created", "/nonexistent-cgroup2"),
    ]
    for group in groups:
        for code in (errno.ENODEV, errno.ENOENT):
            monkeypatch.setattr(cgroups, "_write", failing(code))
            group.thaw()
            group.kill_all()
        monkeypatch.setattr(cgroups, "_write", failing(errno.EACCES))
        with pytest.raises(PermissionError):
            group.thaw()


def test_v1_kill_all_never_signals_a_process_that_took_a_listed_pid(monkeypatch) -> None:
    """A member listed by the first read of cgroup.procs may exit and be reaped, and its pid be taken by
    an unrelated process, before the kill. The injected listing says exactly that: the pid is listed,
    then gone from the group. The old kill_all (a plain kill per listed pid) killed the newcomer."""
    group = cgroups.CgroupV1("clove-gym-test/never-created")
    outsider = subprocess.Popen(["sleep", "60"])
    try:
        reads = iter([[outsider.pid], []])
        monkeypatch.setattr(group, "pids", lambda: next(reads))
        monkeypatch.setattr(group, "thaw", lambda: None)
        group.kill_all()
        assert next(reads, "both read") == "both read"
        with pytest.raises(subprocess.TimeoutExpired):  # it would be dead within this if it was killed
            outsider.wait(0.2)
    finally:
        outsider.kill()
        outsider.wait()


def test_read_returns_the_whole_file_past_one_read(tmp_path) -> None:
    """A long cgroup.procs takes several reads: none of it may be cut off."""
    text = "".join(f"{pid}\n" for pid in range(100_000, 130_000))  # ~210 KB
    (tmp_path / "procs").write_text(text)
    assert cgroups._read(str(tmp_path / "procs")) == text
    with pytest.raises(FileNotFoundError):
        cgroups._read(str(tmp_path / "missing"))
