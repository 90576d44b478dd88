"""Real sandboxed processes: namespaces, filesystem view, network, seccomp, limits, pause, kill, cleanup."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from clove_gym.runtime.sandbox import AgentProcess, Launcher, Limits, SpawnError, SpawnSpec
from clove_gym.runtime.sandbox.cgroups import CGROUP_ROOT, V1_CONTROLLERS, Cgroup
from clove_gym.runtime.sandbox.pidfds import children
from clove_gym.runtime.sandbox.zygote import SLOT_NICE

NS_PROBE = """
import os, json
print(json.dumps({n: os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "mnt", "uts", "ipc", "net")}))
"""


def cgroup_dirs(rel: str) -> list[str]:
    return [d for d in (os.path.join(CGROUP_ROOT, c, rel) for c in V1_CONTROLLERS) if os.path.isdir(d)]


def _lines_during(fd: int, seconds: float, until_first: bool = False) -> list[str]:
    """Lines written to `fd` within `seconds` (returns early at EOF, or at the first line)."""
    out = b""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not (until_first and b"\n" in out):
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            out += chunk
    return out.decode().splitlines()


def gone(pids: list[int]) -> bool:
    """No pid of the tree is left, not even a zombie: kill() returns only after the zygote reaped init
    (and with it the whole PID namespace) and removed the cgroup."""
    return not any(os.path.exists(f"/proc/{p}") for p in pids)


def test_limits_from_json_defaults_and_validation() -> None:
    assert Limits.from_json(None) == Limits()
    assert Limits.from_json({"memory": 1 << 26, "memory_mb": 5}).memory == 1 << 26  # unknown keys ignored
    with pytest.raises(ValueError, match="limits.max_pids"):
        Limits.from_json({"max_pids": 0})
    with pytest.raises(ValueError, match="limits.memory"):
        Limits.from_json({"memory": "256M"})
    with pytest.raises(ValueError, match="limits.cpu_quota"):
        Limits.from_json({"cpu_quota": True})
    with pytest.raises(ValueError, match="limits: expected an object"):
        Limits.from_json([1])


def test_spawnspec_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="argv"):
        SpawnSpec(1, "a", [], {}, None)
    with pytest.raises(ValueError, match="name"):
        SpawnSpec(1, "a/b", ["x"], {}, None)
    with pytest.raises(ValueError, match="cwd"):
        SpawnSpec(1, "a", ["x"], {}, "relative")


def test_namespaces_are_really_different(runner) -> None:
    ran = runner.run(NS_PROBE)
    assert ran.status == 0, ran.err
    inside = json.loads(ran.out)
    for name, link in inside.items():
        assert link != os.readlink(f"/proc/self/ns/{name}"), name
    iso = ran.agent.isolation
    assert iso["fully_isolated"] and iso["namespaces"] == {
        "pid": True,
        "mnt": True,
        "uts": True,
        "ipc": True,
        "net": True,
        "user": False,
    }


def test_two_live_agents_do_not_share_namespaces(runner) -> None:
    started = [
        runner.start(NS_PROBE + "import sys, time\nsys.stdout.flush()\ntime.sleep(30)\n") for _ in range(2)
    ]
    try:
        views = [json.loads(_lines_during(out_r, 5.0, until_first=True)[0]) for _, out_r, _ in started]
    finally:
        for agent, out_r, err_r in started:
            agent.kill(timeout=0)
            os.close(out_r)
            os.close(err_r)
    assert all(views[0][n] != views[1][n] for n in ("pid", "mnt", "net", "uts", "ipc"))


def test_identity_pid_hostname_uid_and_no_terminal(runner) -> None:
    ran = runner.run(
        """
        import os, socket, json, sys
        print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "host": socket.gethostname(),
                          "uid": os.getuid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
                          "tty": os.isatty(0), "stdin": os.readlink("/proc/self/fd/0"),
                          "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}))
        """,
        name="ident",
    )
    info = json.loads(ran.out)
    assert (info["pid"], info["ppid"]) == (2, 1)  # init is 1, the agent is its only child
    assert info["procs"] == [1, 2]  # its own /proc shows only its namespace
    assert info["host"] == f"clove-ident_{ran.agent.agent_id}"
    assert info["uid"] == ran.agent.isolation["uid"] and info["uid"] >= 1 << 30
    assert info["stdin"] == "/dev/null" and not info["tty"]
    check = runner.run(
        "import os\ntry:\n    open('/dev/tty')\nexcept OSError as e:\n    print(type(e).__name__)\n"
    )
    assert check.out.strip() in ("FileNotFoundError", "OSError", "PermissionError")


def test_private_tmp_no_home_no_foreign_files(runner) -> None:
    canary_dir = os.path.join("/tmp", f"clove-canary-{os.getpid()}")
    os.makedirs(canary_dir, exist_ok=True)
    with open(os.path.join(canary_dir, "secret"), "w") as f:
        f.write("host secret")
    try:
        ran = runner.run(
            f"""
            import os, json
            open("/tmp/agent-file", "w").write("x")
            print(json.dumps({{"tmp": sorted(os.listdir("/tmp")), "home": os.path.exists("/home") and os.listdir("/home"),
                              "root": sorted(os.listdir("/root")) if os.path.exists("/root") else [],
                              "canary": os.path.exists({canary_dir!r}), "work_shared": os.path.exists("/work/shared"),
                              "etc_writable": os.access("/etc", os.W_OK), "usr_writable": os.access("/usr", os.W_OK)}}))
            """
        )
        assert ran.status == 0, ran.err
        view = json.loads(ran.out)
    finally:
        os.remove(os.path.join(canary_dir, "secret"))
        os.rmdir(canary_dir)
    assert "agent-file" in view["tmp"] and not os.path.exists("/tmp/agent-file")  # private tmpfs
    assert not view["canary"] and not view["work_shared"]
    assert not view["home"]
    host_root = set(os.listdir("/root"))
    assert set(view["root"]) <= {".pyenv"}, view["root"]  # only the interpreter's install path
    assert len(host_root) > len(view["root"])
    assert not view["etc_writable"] and not view["usr_writable"]


def test_network_namespace_has_only_loopback_and_it_works(runner) -> None:
    ran = runner.run(
        """
        import socket, json
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        c = socket.create_connection(srv.getsockname(), timeout=2)
        print(json.dumps({"ifs": [n for _, n in socket.if_nameindex()], "lo_ok": srv.accept()[0] is not None}))
        """
    )
    assert json.loads(ran.out) == {"ifs": ["lo"], "lo_ok": True}


def test_network_true_keeps_host_network(runner) -> None:
    ran = runner.run(NS_PROBE, network=True)
    assert json.loads(ran.out)["net"] == os.readlink("/proc/self/ns/net")
    assert ran.agent.isolation["namespaces"]["net"] is False


def test_seccomp_denies_listed_syscalls_with_eperm(runner) -> None:
    ran = runner.run(
        """
        import ctypes, errno, json
        libc = ctypes.CDLL(None, use_errno=True)
        def call(nr, *args):
            ctypes.set_errno(0)
            r = libc.syscall(nr, *args)
            return errno.errorcode.get(ctypes.get_errno(), "OK") if r == -1 else "OK"
        out = {"io_uring_setup": call(425, 1, 0), "bpf": call(321, 0, 0, 0), "keyctl": call(250, 0, 0),
               "unshare_user": call(272, 0x10000000), "ptrace_traceme": call(101, 0, 0, 0, 0),
               "kexec_load": call(246, 0, 0, 0, 0), "init_module": call(175, 0, 0, 0),
               "getpid": call(39)}
        out["status"] = [l for l in open("/proc/self/status") if l.startswith("Seccomp:")][0].split()[1]
        print(json.dumps(out))
        """
    )
    got = json.loads(ran.out)
    assert got.pop("getpid") == "OK" and got.pop("status") == "2"
    assert got == dict.fromkeys(got, "EPERM")


def test_seccomp_cannot_be_dodged_through_the_x32_entry_point(runner) -> None:
    ran = runner.run("import ctypes\nctypes.CDLL(None).syscall(0x40000000 + 425, 1, 0)\nprint('bypassed')\n")
    assert ran.status == 128 + signal.SIGSYS and "bypassed" not in ran.out  # killed: wrong ABI


def test_limits_written_and_mechanism_reported(runner) -> None:
    limits = Limits(memory=96 << 20, max_pids=12, cpu_quota=30000, cpu_period=100000, cpu_shares=512)
    agent, out_r, err_r = runner.start("import time\ntime.sleep(30)\n", limits=limits)
    try:
        iso = agent.isolation
        assert iso["mechanism"] == "cgroup1" and iso["cgroups"]["available"]
        assert iso["limits"] == {"memory": "cgroup1", "max_pids": "cgroup1", "cpu_quota": "cgroup1"}
        rel = iso["cgroup_path"]

        def read(ctrl: str, name: str) -> str:
            with open(os.path.join(CGROUP_ROOT, ctrl, rel, name)) as f:
                return f.read().strip()

        assert read("memory", "memory.limit_in_bytes") == str(96 << 20)
        assert read("pids", "pids.max") == "12"
        assert (read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")) == ("30000", "100000")
        assert read("cpu", "cpu.shares") == "512"
        assert sorted(int(p) for p in read("freezer", "cgroup.procs").split()) == sorted(agent._group.pids())
        assert agent.pid in agent._group.pids()
        m = agent.metrics()
        assert m["valid"] and m["mechanism"] == "cgroup1" and m["cgroup_path"] == rel
        assert m["memory"]["max"] == 96 << 20 and m["pids"]["max"] == 12 and m["pids"]["current"] == 2
        assert m["cpu"]["quota_usec"] == 30000 and m["cpu"]["period_usec"] == 100000
        assert m["memory"]["current"] > 0 and not agent.oom_killed()
    finally:
        agent.kill(timeout=0)
        os.close(out_r)
        os.close(err_r)
    assert cgroup_dirs(rel) == []
    assert agent.metrics()["valid"] is False and agent.metrics()["cpu"]["usage_usec"] == 0


TICKER = """
import os, sys, time
if os.fork() == 0:
    tag = "child"
else:
    tag = "parent"
while True:
    os.write(1, f"{tag} {time.monotonic()}\\n".encode())
    time.sleep(0.02)
"""


def test_pause_freezes_the_whole_tree_and_resume_thaws_it(runner) -> None:
    agent, out_r, err_r = runner.start(TICKER)
    try:
        before = _lines_during(out_r, 0.5)
        assert {line.split()[0] for line in before} == {"parent", "child"}
        agent.pause()
        assert agent.paused and agent._group.frozen()
        _lines_during(out_r, 0.05)  # drain what was written before the freeze completed
        assert _lines_during(out_r, 0.4) == []
        agent.resume()
        after = _lines_during(out_r, 0.5)
        assert {line.split()[0] for line in after} == {"parent", "child"}
    finally:
        agent.kill(timeout=0)
        os.close(out_r)
        os.close(err_r)


def test_kill_of_paused_agent_ends_the_tree(runner) -> None:
    agent, out_r, err_r = runner.start(TICKER)
    try:
        _lines_during(out_r, 0.3)
        pids = agent._group.pids()
        assert len(pids) == 3  # init, agent, its child
        agent.pause()
        status = agent.kill(timeout=5.0)  # must not wait 5 s for a frozen SIGTERM handler
        assert status == 128 + signal.SIGKILL
        assert gone([agent.pid, *pids])
    finally:
        os.close(out_r)
        os.close(err_r)


KEEPS_RUNNING_ON_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print("term", flush=True))
print("ready", flush=True)
while True:
    time.sleep(60)
"""


def _line(fd: int, timeout: float) -> str:
    """The next line on `fd` (read byte by byte, so nothing after it is consumed), '' at EOF or timeout."""
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n") and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        byte = os.read(fd, 1)
        if not byte:
            break
        out += byte
    return out.decode().strip()


def test_terminate_sends_sigterm_once_and_kill_counts_the_grace_from_it(runner) -> None:
    """The kernel's KILL sends SIGTERM on its loop (terminate) and waits on a worker (kill): the agent
    must see one SIGTERM, and the grace period must not start again when the worker gets to it."""
    agent, out_r, err_r = runner.start(KEEPS_RUNNING_ON_SIGTERM)
    try:
        assert _line(out_r, 10.0) == "ready"
        agent.terminate()
        assert _line(out_r, 5.0) == "term"  # sent at once, before any wait
        time.sleep(0.4)
        t0 = time.monotonic()
        status = agent.kill(timeout=1.0)
        elapsed = time.monotonic() - t0
        assert status == 128 + signal.SIGKILL  # its handler kept it alive through the grace period
        assert elapsed < 0.9, elapsed  # over 0.4 s of the grace had passed since terminate()
        assert _line(out_r, 5.0) == ""  # EOF: kill() sent no second SIGTERM
    finally:
        os.close(out_r)
        os.close(err_r)


def test_concurrent_sigkills_race_the_zygote_removing_the_groups(runner) -> None:
    """kill(timeout=0) SIGKILLs init, then kills and thaws the whole group while the zygote reaps init
    and removes that group: every kill reports SIGKILL and leaves no group. A thaw that lands in the
    ENODEV window (the kernel tearing the group's files down) used to raise out of kill(); that window
    is narrow, so test_sandbox_cgroups covers it deterministically."""
    for _ in range(3):
        agents = [runner.start("import time\ntime.sleep(60)\n") for _ in range(10)]
        for _agent, out_r, err_r in agents:
            os.close(out_r)
            os.close(err_r)
        with concurrent.futures.ThreadPoolExecutor(len(agents)) as pool:
            statuses = list(pool.map(lambda a: a[0].kill(timeout=0), agents))
        assert statuses == [128 + signal.SIGKILL] * len(agents)
        assert all(cgroup_dirs(a.isolation["cgroup_path"]) == [] for a, _, _ in agents)


def test_kill_leaves_nothing_behind(runner, monkeypatch) -> None:
    removes = []  # in this process: the zygote removed the group, and said so in its report
    remove = Cgroup.remove
    monkeypatch.setattr(
        Cgroup, "remove", lambda self, *a, **kw: (removes.append(self.rel), remove(self, *a, **kw))[1]
    )
    agent, out_r, err_r = runner.start(
        """
        import os, subprocess, time
        subprocess.Popen(["sleep", "60"])            # grandchild
        if os.fork() == 0:                           # an orphan: its parent exits at once
            if os.fork() == 0:
                time.sleep(60)
            os._exit(0)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    assert _lines_during(out_r, 1.0)[:1] == ["ready"]
    pids = agent._group.pids()
    rel = agent.isolation["cgroup_path"]
    assert len(pids) >= 4
    t0 = time.monotonic()
    status = agent.kill(timeout=2.0)
    elapsed = time.monotonic() - t0
    os.close(out_r)
    os.close(err_r)
    assert status == 128 + signal.SIGTERM  # the agent died of SIGTERM; init exited with its status
    assert elapsed < 2.0
    assert gone([agent.pid, *pids])  # no process, no zombie, at the moment kill() returned
    assert cgroup_dirs(rel) == []
    assert removes == [], "the launcher removed again a group the zygote reported removed"
    with pytest.raises(OSError):
        os.fstat(agent.pidfd)  # pidfd released
    with open("/proc/self/mountinfo") as f:
        assert runner.launcher._newroot not in f.read()  # mounts only ever existed in the agent's namespace
    assert agent.poll() == status and agent.kill() == status


@pytest.mark.parametrize(("orphans", "sender"), [(1, 0), (17, 1)])
def test_sigterm_goes_to_the_agent_itself_not_through_init(runner, orphans: int, sender: int) -> None:
    """terminate() signals the agent directly, one wake-up of init fewer per kill: the sender is outside
    the agent's PID namespace (si_pid 0), where init forwarding it would show as pid 1. The agent is
    told apart from an orphan init adopted, which gets nothing. With more orphans than are worth
    telling apart on the kernel's thread, init forwards it (si_pid 1)."""
    agent, out_r, err_r = runner.start(
        f"""
        import os, signal, time
        signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGTERM}})
        for _ in range({orphans}):
            middle = os.fork()
            if middle == 0:
                if os.fork() == 0:  # orphaned at once: init adopts it
                    info = signal.sigtimedwait({{signal.SIGTERM}}, 60)
                    print("orphan got", info and info.si_pid, flush=True)
                    os._exit(0)
                os._exit(0)
            os.waitpid(middle, 0)
        print("ready", flush=True)
        print("agent got", signal.sigwaitinfo({{signal.SIGTERM}}).si_pid, flush=True)
        time.sleep(0.3)  # time enough for an orphan to say so, had it been sent SIGTERM too
        """
    )
    assert _lines_during(out_r, 5.0, until_first=True) == ["ready"]
    assert len(children(agent.pid)) == orphans + 1
    agent.terminate()
    assert agent.wait(5.0) == 0
    assert _lines_during(out_r, 1.0) == [f"agent got {sender}"]
    os.close(out_r)
    os.close(err_r)


def test_fileno_turns_readable_once_the_agent_is_released(runner) -> None:
    """fileno() is what an event loop waits on: it turns readable only once the zygote has reported the
    agent's exit, i.e. init reaped and cgroup removed, so poll() then has the status without waiting.
    Init's pidfd turns readable earlier, at its exit; a loop woken by it would have to wait again."""
    agent, out_r, err_r = runner.start(
        "import time\nprint('ready', flush=True)\ntime.sleep(0.5)\nraise SystemExit(7)\n"
    )
    assert _lines_during(out_r, 5.0, until_first=True) == ["ready"]
    rel, fd = agent.isolation["cgroup_path"], agent.fileno()
    assert fd != agent.pidfd and select.select([fd], [], [], 0)[0] == []  # running
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    assert gone([agent.pid]) and cgroup_dirs(rel) == []  # released when it turned readable
    pipe = os.fstat(fd).st_ino
    assert agent.poll() == 7
    with contextlib.suppress(OSError):  # closed with the pidfd (its number may be reused)
        assert os.fstat(fd).st_ino != pipe
    os.close(out_r)
    os.close(err_r)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("import os\nos._exit(3)\n", 3),
        ("raise RuntimeError('boom')\n", 1),
        ("import sys\nsys.exit(5)\n", 5),
        ("import ctypes\nctypes.string_at(0)\n", 128 + signal.SIGSEGV),
        ("print('fine')\n", 0),
    ],
)
def test_exit_statuses(runner, code: str, status: int) -> None:
    ran = runner.run(code)
    assert ran.status == status, ran.err
    assert ran.agent.isolation["cgroup_path"] and cgroup_dirs(ran.agent.isolation["cgroup_path"]) == []


def test_uncaught_exception_traceback_reaches_stderr(runner) -> None:
    ran = runner.run("raise RuntimeError('boom')\n")
    assert "RuntimeError: boom" in ran.err


def test_non_python_executable_is_execed(runner) -> None:
    ran = runner.run("", argv=["/bin/sh", "-c", "echo $((6*7)); hostname; exit 4"], name="shell")
    assert ran.status == 4 and ran.out.split() == ["42", f"clove-shell_{ran.agent.agent_id}"]
    assert ran.agent.isolation["zygote"] is False


def test_cold_python_without_zygote(runner) -> None:
    ran = runner.run("import sys\nprint(sys.argv[1:])\n", use_zygote=False)
    assert ran.status == 0 and ran.out.strip() == "[]" and ran.agent.isolation["zygote"] is False


def test_spawn_errors_name_the_reason(runner) -> None:
    with pytest.raises(SpawnError, match="not found"):
        runner.run("", argv=["no-such-program-xyz"])
    with pytest.raises(SpawnError, match="cwd"):
        runner.run("pass\n", cwd="/no/such/dir")
    with pytest.raises(SpawnError, match="socket_path"):
        runner.run("pass\n", socket_path="/no/such.sock")


def test_kernel_socket_reachable_and_packages_importable(runner) -> None:
    sock_dir = runner.tmp.parent / f"{runner.tmp.name}-kernel"  # not under the bound script directory
    sock_dir.mkdir(mode=0o755)
    (sock_dir / "other-agent.sock").write_text("")
    path = str(sock_dir / "kernel.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    srv.settimeout(10)
    compat = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "..", "runtime", "_compat"
    )
    compat = os.path.realpath(compat)
    env = {"PATH": "/usr/bin:/bin"}
    if os.path.isdir(compat):
        env["PYTHONPATH"] = compat
    script = runner.script(
        f"""
        import os, socket, sys
        import clove_gym.runtime.protocol
        sdk = "yes"
        try:
            import clove_sdk
        except ImportError:
            sdk = "missing"
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"hello " + sdk.encode())
        print(sorted(os.listdir({str(sock_dir)!r})))
        """
    )
    ran = runner.run("", argv=[sys.executable, script, path], socket_path=path, env=env)
    assert ran.status == 0, ran.err + ran.out
    conn, _ = srv.accept()
    greeting = conn.recv(100)
    conn.close()
    srv.close()
    assert ran.status == 0, ran.err
    assert greeting == (b"hello yes" if "PYTHONPATH" in env else b"hello missing")
    shutil.rmtree(sock_dir)
    assert ran.out.strip() == "['kernel.sock']"  # the other agent's socket is not visible


def test_unsandboxed_agent_shares_host_namespaces_but_not_network(runner) -> None:
    ran = runner.run(NS_PROBE, sandboxed=False)
    inside = json.loads(ran.out)
    assert inside["pid"] == os.readlink("/proc/self/ns/pid") and inside["mnt"] == os.readlink(
        "/proc/self/ns/mnt"
    )
    assert inside["net"] != os.readlink("/proc/self/ns/net")
    iso = ran.agent.isolation
    assert not iso["fully_isolated"] and "sandboxed=false" in iso["degraded_reason"]


def test_close_kills_everything_and_removes_cgroups_and_temp_dir(runner) -> None:
    with Launcher(root_cgroup_name="clove-gym-test") as launcher:
        agents = [
            launcher.spawn(
                SpawnSpec(
                    i,
                    f"c{i}",
                    [sys.executable, runner.script(TICKER)],
                    {},
                    None,
                    stdout_fd=os.open(os.devnull, os.O_WRONLY),
                )
            )
            for i in (1, 2)
        ]
        pids = [p for a in agents for p in a._group.pids()]
        tag_dirs = [os.path.join(CGROUP_ROOT, c, "clove-gym-test", launcher._tag) for c in V1_CONTROLLERS]
        newroot, zygote = launcher._newroot, launcher._zygote
    assert gone(pids)
    assert not any(os.path.exists(d) for d in tag_dirs)
    assert not os.path.exists(newroot) and zygote.poll() is not None
    with pytest.raises(SpawnError, match="closed"):
        launcher.spawn(SpawnSpec(9, "late", ["true"], {}, None))


def test_crashed_launcher_process_leaves_nothing_behind(runner) -> None:
    code = textwrap.dedent(
        """
        import os, sys, json
        from clove_gym.runtime.sandbox import Launcher, SpawnSpec
        launcher = Launcher(root_cgroup_name="clove-gym-test")
        agent = launcher.spawn(SpawnSpec(1, "orphan", ["sleep", "60"], {"PATH": "/usr/bin:/bin"}, None))
        print(json.dumps({"pids": agent._group.pids(), "rel": agent.isolation["cgroup_path"], "newroot": launcher._newroot}), flush=True)
        os._exit(1)  # a kernel crash: no close(), no atexit
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    info = json.loads(proc.stdout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        cgroup_dirs(info["rel"]) or any(os.path.exists(f"/proc/{p}") for p in info["pids"])
    ):
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{p}") for p in info["pids"])
    assert cgroup_dirs(info["rel"]) == [] and cgroup_dirs(os.path.dirname(info["rel"])) == []
    assert not os.path.exists(info["newroot"])


VIEW_PROBE = """
import json, os, socket
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "procs": sorted(p for p in os.listdir("/proc") if p.isdigit()),
                  "root": sorted(os.listdir("/")), "tmp": os.listdir("/tmp"), "cwd": os.getcwd(),
                  "ifs": [n for _, n in socket.if_nameindex()], "host": socket.gethostname(),
                  "seccomp": [l.split()[1] for l in open("/proc/self/status") if l.startswith("Seccomp:")],
                  "groups": os.getgroups(), "uid_is_own": os.getuid() != 0,
                  "env": dict(os.environ), "core": __import__("resource").getrlimit(__import__("resource").RLIMIT_CORE),
                  "handlers": [str(__import__("signal").getsignal(n)) for n in range(1, 32) if n not in (9, 19)],
                  "mounts": sorted((l.split()[4], sorted(set(l.split()[5].split(",")) & {"ro", "rw", "nosuid", "nodev", "noexec"}))
                                   for l in open("/proc/self/mountinfo"))}))
"""


def _view(launcher: Launcher, script: str, agent_id: int) -> tuple[dict, bool]:
    r, w = os.pipe()
    agent = launcher.spawn(SpawnSpec(agent_id, "view", [sys.executable, script], {}, None, stdout_fd=w))
    os.close(w)
    out = b"".join(iter(lambda: os.read(r, 65536), b""))
    os.close(r)
    assert agent.wait(10) == 0
    return json.loads(out), agent.isolation["warm_slot"]


def test_warm_slot_and_cold_path_give_the_same_sandbox(runner) -> None:
    script = runner.script(VIEW_PROBE)
    with Launcher(root_cgroup_name="clove-gym-test", pool_size=0) as cold:
        cold_view, was_warm = _view(cold, script, 1)
        assert not was_warm
    with Launcher(root_cgroup_name="clove-gym-test", pool_size=1) as warm:
        deadline = time.monotonic() + 10
        was_warm = False
        while not was_warm and time.monotonic() < deadline:
            time.sleep(0.1)  # the slot prepares itself once the zygote is idle
            warm_view, was_warm = _view(warm, script, 1)
        assert was_warm, "no warm slot became ready within 10 s"
    assert warm_view == cold_view


def test_a_warm_slot_reaches_a_kernel_socket_made_anew_at_the_same_path(runner, tmp_path) -> None:
    """Slots bind the kernel socket ahead of time; a socket made anew at that path (a restarted kernel) is
    another file, so an agent of an older slot must get the new one bound, not the stale one."""
    path = str(tmp_path / "kernel.sock")
    script = runner.script(
        "import socket, sys\ns = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b'hi')\n"
    )

    def serve() -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen()
        srv.settimeout(10)
        return srv

    with Launcher(root_cgroup_name="clove-gym-test", pool_size=1) as launcher:
        srv = serve()
        warm = []
        for i in range(40):  # the first spawn tells the zygote the socket; later slots bind it ahead
            spec = SpawnSpec(i + 1, f"s{i}", [sys.executable, script, path], {}, None, socket_path=path)
            agent = launcher.spawn(spec)
            assert agent.wait(10) == 0
            srv.accept()[0].close()
            warm.append(agent.isolation["warm_slot"])
            if sum(warm[1:]) >= 1:
                break
            time.sleep(0.2)
        assert any(warm[1:]), "no warm slot with the socket bound ahead became ready"
        srv.close()
        time.sleep(0.3)  # a slot is ready again, made while the old socket existed
        srv = serve()
        spec = SpawnSpec(99, "anew", [sys.executable, script, path], {}, None, socket_path=path)
        agent = launcher.spawn(spec)
        assert agent.isolation["warm_slot"]
        assert agent.wait(10) == 0
        conn, _ = srv.accept()
        assert conn.recv(10) == b"hi"
        conn.close()
        srv.close()


def test_an_agent_never_sees_the_socket_another_kernel_bound_ahead(runner, tmp_path) -> None:
    """A launcher whose spawns switch to another kernel socket must not hand out a slot that bound the
    first one ahead: that socket would be visible (and reachable) in the agent's sandbox."""
    first, second = tmp_path / "a" / "kernel.sock", tmp_path / "b" / "kernel.sock"
    servers = []
    for path in (first, second):
        path.parent.mkdir(mode=0o755)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        srv.listen(64)
        servers.append(srv)
    script = runner.script(
        "import os, sys\nprint(os.path.exists(sys.argv[1]), os.path.exists(sys.argv[2]))\n"
    )

    def spawn(agent_id: int, sock: str) -> tuple[str, bool]:
        r, w = os.pipe()
        argv = [sys.executable, script, str(first), str(second)]
        spec = SpawnSpec(agent_id, f"v{agent_id}", argv, {}, None, socket_path=sock, stdout_fd=w)
        agent = launcher.spawn(spec)
        os.close(w)
        assert agent.wait(10) == 0
        out = os.read(r, 100).decode().strip()
        os.close(r)
        return out, agent.isolation["warm_slot"]

    with Launcher(root_cgroup_name="clove-gym-test", pool_size=2) as launcher:
        for i in range(30):  # until a slot made with the first socket ahead has served
            seen, warm = spawn(i + 1, str(first))
            assert seen == "True False"
            if warm and i:
                break
            time.sleep(0.2)
        assert warm, "no warm slot became ready"
        time.sleep(0.5)  # slots with the first socket ahead are ready again
        for i in range(5):
            assert spawn(100 + i, str(second))[0] == "False True"
    for srv in servers:
        srv.close()


def _warm_slot_pids(root: str) -> list[int]:
    """Pids in the launcher's warm-slot cgroups (freezer hierarchy)."""
    pids: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        for slot in os.listdir(root):
            if slot.startswith("warm-"):
                with open(os.path.join(root, slot, "cgroup.procs")) as f:
                    pids += [int(p) for p in f.read().split()]
    return pids


def test_warm_slots_wait_at_low_priority_and_agents_run_at_normal(runner) -> None:
    """A slot in the making or waiting yields the CPU to running agents and spawns (nice 10); the
    agent it becomes is back at nice 0 before its first instruction, and so is its init."""
    probe = runner.script(
        "import os\nprint(os.getpriority(os.PRIO_PROCESS, 0), os.getpriority(os.PRIO_PROCESS, 1))\n"
    )
    with Launcher(root_cgroup_name="clove-gym-test", pool_size=1) as launcher:
        root = os.path.join(CGROUP_ROOT, "freezer", "clove-gym-test", launcher._tag)
        deadline = time.monotonic() + 10
        waiting: list[int] = []
        host_ns = os.readlink("/proc/self/ns/pid")

        def slot_only(pids: list[int]) -> bool:  # setup gone: init + waiting agent, both in the new ns
            with contextlib.suppress(OSError):
                return len(pids) == 2 and all(os.readlink(f"/proc/{p}/ns/pid") != host_ns for p in pids)
            return False

        while not slot_only(waiting) and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = _warm_slot_pids(root)
        assert slot_only(waiting), f"no warm slot (init + waiting agent) within 10 s: {waiting}"
        assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in waiting] == [SLOT_NICE] * 2
        # the slot pivoted into its own root ahead of time: no host tree left to detach on a spawn
        assert all(os.stat(f"/proc/{pid}/root/").st_dev != os.stat("/").st_dev for pid in waiting)
        for attempt in range(20):  # a slot still finishing its filesystem is skipped: try the next
            out_r, out_w = os.pipe()
            spec = SpawnSpec(
                attempt + 1, f"prio{attempt}", [sys.executable, probe], {}, None, stdout_fd=out_w
            )
            agent = launcher.spawn(spec)
            os.close(out_w)
            assert agent.wait(10) == 0
            seen = os.read(out_r, 100).split()
            os.close(out_r)
            if agent.isolation["warm_slot"]:
                break
            time.sleep(0.2)
        assert agent.isolation["warm_slot"], "no spawn used a warm slot"
        assert seen == [b"0", b"0"]


def _zygote_hook(tmp_path, monkeypatch, module: str, source: str) -> tuple[str]:
    """Write a test module for the zygote to preload, importable from tmp_path; returns `preload`."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    return (module,)


# Preloaded by the zygote: before it reads the status of a spawn on the path named in CLOVE_TEST_LATE_REAP
# (cold or warm), wait until the agent has ended (its init is a zombie, and setup too on the cold path)
# and run the wake-up handler, as when the zygote is descheduled with a SIGCHLD pending at the worst
# moment. Writes what it saw to the file in CLOVE_TEST_LATE_REAP_SEEN.
_LATE_REAP = """
import os, time
from clove_gym.runtime.sandbox import zygote

_real = zygote.read_status


def _zombies():
    n = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            for pid in f.read().split():
                try:
                    with open(f"/proc/{pid}/stat") as s:
                        n += s.read().rsplit(")", 1)[1].split()[0] == "Z"
                except OSError:
                    pass
    return n


def read_status(sock, timeout=zygote.SPAWN_TIMEOUT, wake=None, on_line=None):
    cold = on_line is not None
    if cold != (os.environ["CLOVE_TEST_LATE_REAP"] == "cold"):
        return _real(sock, timeout, wake, on_line)
    want = 2 if cold else 1
    deadline = time.monotonic() + 10
    while _zombies() < want and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(os.environ["CLOVE_TEST_LATE_REAP_SEEN"], "a") as f:
        f.write(f"{want} {_zombies()}\\n")
    wake[1]()
    return _real(sock, timeout, wake, on_line)


zygote.read_status = read_status
"""


@pytest.mark.parametrize("pool_size", [0, 1], ids=["cold", "warm"])
def test_an_agent_that_ends_before_its_spawn_is_read_is_reported(
    tmp_path, monkeypatch, pool_size: int
) -> None:
    """A quick agent can end, and its exit wake the zygote, before the zygote has read its spawn's
    status. Reaping then must neither lose init's pid (cold: the spawn failed with ESRCH) nor its exit
    (warm: the exit never came, and wait() gave a made-up 137 after 5 s)."""
    preload = _zygote_hook(tmp_path, monkeypatch, "clove_late_reap", _LATE_REAP)
    seen = tmp_path / "seen"
    monkeypatch.setenv("CLOVE_TEST_LATE_REAP", "warm" if pool_size else "cold")
    monkeypatch.setenv("CLOVE_TEST_LATE_REAP_SEEN", str(seen))
    with Launcher(root_cgroup_name="clove-gym-test", pool_size=pool_size, preload=preload) as launcher:
        for attempt in range(20):  # warm: cold spawns (as they come) until a slot is ready
            spec = SpawnSpec(attempt + 1, f"late{attempt}", [sys.executable, "-c", "pass"], {}, None)
            agent = launcher.spawn(spec)
            assert agent.wait(10) == 0
            if agent.isolation["warm_slot"] == bool(pool_size):
                break
            time.sleep(0.2)
        assert agent.isolation["warm_slot"] == bool(pool_size)
        assert launcher._agents == {} and launcher._statuses == {}
    (line,) = seen.read_text().splitlines()  # the spawn on the path under test was the late one
    want, zombies = line.split()
    assert int(zombies) >= int(want), "the agent had not ended when the zygote reaped"


# Preloaded by the zygote: before it reads the first pid line of a warm slot, kill that slot's init, wait
# until it is a zombie of the zygote, run the wake-up handler (a reap takes it for a stranger, as when an
# exit's wake-up comes first), and give its pid to a decoy child of the zygote (`sleep`) through
# ns_last_pid. Writes "pid decoy-pid" to the file in CLOVE_TEST_SLOT_REUSE_SEEN.
_SLOT_REUSE = """
import os, signal, socket, time
from clove_gym.runtime.sandbox import zygote

_real = zygote.Zygote.slot_message
_done = []


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _take_pid(pid):
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        child = os.fork()
        if child == 0:
            try:
                os.execv("/bin/sleep", ["sleep", "60"])
            finally:
                os._exit(127)
        if child == pid:
            return child
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    return -1


def slot_message(self, slot):
    # a second slot is tried if another process took the pid first (two tries: a third dead slot
    # would disable the pool, which the test then needs)
    if len(_done) < 2 and not any(_done) and slot.init_pid is None:
        data = slot.sock.recv(65536, socket.MSG_PEEK)
        if data.startswith(b"pid "):
            pid = int(data.split()[1])
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _state(pid) != ("Z", os.getpid()) and time.monotonic() < deadline:
                time.sleep(0.002)
            self.wake()
            decoy = _take_pid(pid) if _state(pid) is None else -2
            _done.append(decoy == pid)
            with open(os.environ["CLOVE_TEST_SLOT_REUSE_SEEN"], "a") as f:
                f.write(f"{pid} {decoy}\\n")
    return _real(self, slot)


zygote.Zygote.slot_message = slot_message
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write /proc/sys/kernel/ns_last_pid")
def test_a_slot_init_reaped_before_its_pid_is_read_is_never_signalled_by_pid(tmp_path, monkeypatch) -> None:
    """A warm slot's init can end, and be reaped as a stranger, before the zygote reads its pid line;
    its pid may then be another process's. The slot is dropped through the pidfd its setup sent, so
    that process lives on (by pid, the zygote SIGKILLed it and reaped it in the slot's place)."""
    preload = _zygote_hook(tmp_path, monkeypatch, "clove_slot_reuse", _SLOT_REUSE)
    seen = tmp_path / "seen"
    monkeypatch.setenv("CLOVE_TEST_SLOT_REUSE_SEEN", str(seen))
    decoy = -1
    try:
        with Launcher(root_cgroup_name="clove-gym-test", pool_size=1, preload=preload) as launcher:
            tries: list[tuple[int, int]] = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                lines = seen.read_text().splitlines() if seen.exists() else []
                tries = [(int(p), int(d)) for p, d in map(str.split, lines)]
                if any(d == p for p, d in tries) or len(tries) == 2:
                    break
                time.sleep(0.02)
            assert tries, "no warm slot's pid line was intercepted"
            pid, decoy = tries[-1]
            assert decoy == pid, f"the reaped init was not reaped in time, or its pid not retaken: {tries}"
            # pool_size=1: a warm spawn runs in a new slot, made only after the dead one was dropped
            for attempt in range(50):
                spec = SpawnSpec(attempt + 1, f"after{attempt}", [sys.executable, "-c", "pass"], {}, None)
                agent = launcher.spawn(spec)
                assert agent.wait(10) == 0
                if agent.isolation["warm_slot"]:
                    break
                time.sleep(0.1)
            assert agent.isolation["warm_slot"], "the pool did not recover from the dead slot"
            try:
                with open(f"/proc/{decoy}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                state = "reaped"
            assert state not in ("Z", "reaped"), (
                f"the decoy holding the reaped init's pid was killed: {state}"
            )
    finally:
        if decoy > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(decoy, signal.SIGKILL)


# Run with RLIMIT_NOFILE 64/64 (nothing to raise to): sleeping agents are spawned until one fails.
_EXHAUST = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
from clove_gym.runtime.sandbox import Launcher, SpawnError, SpawnSpec
from clove_gym.runtime.sandbox.pidfds import children

def spec(n):
    return SpawnSpec(n, f"fd{n}", ["/bin/sleep", "60"], {"PATH": "/bin:/usr/bin"}, None)

with Launcher(root_cgroup_name="clove-gym-test", pool_size=0) as launcher:
    agents, error = [], None
    for n in range(1, 200):
        try:
            agents.append(launcher.spawn(spec(n)))
        except SpawnError as exc:
            error = str(exc)
            break
    untracked = {*launcher._live, *launcher._statuses} - {a.pid for a in agents}
    statuses = [agents.pop().kill(timeout=2) for _ in range(3)]  # frees six descriptors
    zygote = launcher._zygote.pid
    deadline = time.monotonic() + 5  # the zygote kills the agent it could not hand over
    while len(children(zygote)) > len(agents) and time.monotonic() < deadline:
        time.sleep(0.01)
    inits = len(children(zygote))
    again = launcher.spawn(spec(1000))
    statuses.append(again.kill(timeout=2))
    statuses += [a.kill(timeout=2) for a in agents]
print(json.dumps({"spawned": len(agents) + 3, "error": error, "inits": inits, "untracked": list(untracked),
                  "statuses": statuses}))
"""


def test_a_kernel_process_out_of_descriptors_fails_the_spawn_and_kills_its_agent() -> None:
    """Where the fd limit cannot be raised, the spawn whose pidfd and release pipe do not fit fails with
    an error naming the limit, and its agent does not run on untracked; once descriptors are freed,
    spawning works again. (Before, it raised IndexError and left the agent running.)"""
    proc = subprocess.run([sys.executable, "-c", _EXHAUST], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["spawned"] >= 10, seen
    assert "the kernel process is out of file descriptors (RLIMIT_NOFILE 64/64" in seen["error"], seen
    assert "it was killed" in seen["error"]
    assert seen["inits"] == seen["spawned"] - 3 and seen["untracked"] == [], seen
    assert seen["statuses"] == [128 + signal.SIGTERM] * (seen["spawned"] + 1)


# Preloaded by the zygote: while the file in CLOVE_TEST_STARVE names `recv` or `_finish`, that call
# runs with the soft fd limit at the lowest free descriptor, so any descriptor it would get fails.
_STARVE = """
import os, resource
from clove_gym.runtime.sandbox import zygote


def _starved(call, name):
    def wrapped(*args, **kwargs):
        try:
            with open(os.environ["CLOVE_TEST_STARVE"]) as f:
                wanted = f.read().strip()
        except FileNotFoundError:
            wanted = ""
        if wanted != name:
            return call(*args, **kwargs)
        lowest = os.dup(0)  # the lowest free descriptor
        os.close(lowest)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
        try:
            return call(*args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return wrapped


zygote.recv = _starved(zygote.recv, "recv")
zygote.Zygote._finish = _starved(zygote.Zygote._finish, "_finish")
"""


@pytest.mark.parametrize("where", ["recv", "_finish"])
def test_a_zygote_out_of_descriptors_fails_the_spawn_and_lives_on(tmp_path, monkeypatch, where) -> None:
    """recv: the agent's stdout and stderr are dropped from the spawn request (the zygote used to die of
    an IndexError, and with it every agent); _finish: the agent's release pipe cannot be made (the agent
    used to run on, known to the zygote only). Either way the spawn fails naming the cause, nothing of
    it is left, and the next spawn works."""
    preload = _zygote_hook(tmp_path, monkeypatch, "clove_starve", _STARVE)
    flag = tmp_path / "starve"
    monkeypatch.setenv("CLOVE_TEST_STARVE", str(flag))
    what = {"recv": "the agent's stdout and stderr", "_finish": "the agent's release pipe"}[where]
    with Launcher(root_cgroup_name="clove-gym-test", pool_size=0, preload=preload) as launcher:
        live = launcher.spawn(SpawnSpec(1, "live", ["/bin/sleep", "60"], {"PATH": "/bin:/usr/bin"}, None))
        flag.write_text(where)
        with pytest.raises(SpawnError, match=f"the zygote is out of file descriptors .*no room for {what}"):
            launcher.spawn(SpawnSpec(2, "starved", ["/bin/sleep", "60"], {"PATH": "/bin:/usr/bin"}, None))
        flag.unlink()
        assert children(launcher._zygote.pid) == [live.pid]
        assert launcher._zygote.poll() is None
        assert not cgroup_dirs(f"{launcher._root_rel}/starved_2")
        after = launcher.spawn(SpawnSpec(3, "after", ["/bin/sleep", "60"], {"PATH": "/bin:/usr/bin"}, None))
        assert after.kill(timeout=2) == live.kill(timeout=2) == 128 + signal.SIGTERM


def test_spawn_kill_and_poll_from_several_threads(runner) -> None:
    launcher = runner.launcher
    script = runner.script("import time\ntime.sleep(30)\n")
    quick = runner.script("pass\n")

    def cycle(i: int) -> tuple[int, int]:
        agent = launcher.spawn(SpawnSpec(100 + i, f"thr{i}", [sys.executable, script], {}, None))
        short = launcher.spawn(SpawnSpec(200 + i, f"quick{i}", [sys.executable, quick], {}, None))
        return agent.kill(timeout=0.5), short.wait(10)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(cycle, range(8)))
    assert results == [(128 + signal.SIGTERM, 0)] * 8
    assert launcher._agents == {} and launcher._statuses == {}


NONROOT = """
import json, os, sys, time
from clove_gym.runtime.sandbox import Launcher, Limits, SpawnSpec
with Launcher(root_cgroup_name="clove-gym-test") as launcher:
    r, w = os.pipe()
    script = 'echo "$$ $(hostname) $(ulimit -v) $(readlink /proc/self/ns/pid) $(readlink /proc/self/ns/net) $(id -u)"; sleep 30'
    agent = launcher.spawn(SpawnSpec(1, "unpriv", ["/bin/sh", "-c", script], {"PATH": "/usr/bin:/bin"}, None,
                                     stdout_fd=w, limits=Limits(memory=512 << 20)))
    os.close(w)
    line = os.read(r, 4096).decode().split()
    deadline = time.monotonic() + 5  # init execs clove-init just after it forked the agent
    while (init := open(f"/proc/{agent.pid}/comm").read().strip()) != "clove-init" and time.monotonic() < deadline:
        time.sleep(0.01)
    agent.pause()
    frozen = [open(f"/proc/{p}/stat").read().split()[2] for p in agent._tree()]
    agent.resume()
    status = agent.kill(timeout=2)
    print(json.dumps({"caps": launcher.capabilities, "iso": agent.isolation, "line": line, "frozen": frozen,
                      "status": status, "init": init, "host_pid_ns": os.readlink("/proc/self/ns/pid"),
                      "host_net_ns": os.readlink("/proc/self/ns/net")}))
"""


def test_without_root_user_namespaces_and_rlimits_are_used_and_reported(runner) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run the launcher as an unprivileged user")
    # nobody, keeping only the right to read files (the interpreter lives under root's 0700 home here)
    cmd = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=+dac_read_search",
        "--ambient-caps=+dac_read_search",
        sys.executable,
        "-c",
        NONROOT,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    caps, iso = got["caps"], got["iso"]
    assert not caps["root"] and caps["userns"] and caps["mechanism"] == "rlimit"
    assert iso["namespaces"]["user"] and iso["namespaces"]["pid"] and not iso["fully_isolated"]
    assert iso["init"] == "native" and got["init"] == "clove-init"  # exec'd inside the user namespace
    assert iso["limits"] == {"memory": "rlimit", "max_pids": None, "cpu_quota": None}
    assert "rlimits" in iso["degraded_reason"] and "not root" in iso["degraded_reason"]
    pid, host, vmem, pid_ns, net_ns, uid = got["line"]
    assert (pid, host, uid) == ("2", "clove-unpriv_1", "0")  # root of its own user namespace only
    assert int(vmem) == 512 << 10 and pid_ns != got["host_pid_ns"] and net_ns != got["host_net_ns"]
    assert "T" in got["frozen"] and set(got["frozen"]) <= {
        "T",
        "D",
    }  # SIGSTOP to the whole tree (D: vfork parent)
    assert got["status"] == 128 + signal.SIGTERM


@pytest.mark.parametrize("native_init", [True, False], ids=["clove-init", "python-init"])
def test_agents_die_with_a_killed_zygote_and_close_still_cleans_up(runner, native_init) -> None:
    script = runner.script("import time\ntime.sleep(60)\n")
    launcher = Launcher(root_cgroup_name="clove-gym-test", pool_size=1, native_init=native_init)
    try:
        agents = [launcher.spawn(SpawnSpec(i, f"z{i}", [sys.executable, script], {}, None)) for i in (1, 2)]
        agents.append(launcher.spawn(SpawnSpec(3, "z3", ["sleep", "60"], {"PATH": "/usr/bin:/bin"}, None)))
        pids = [p for a in agents for p in a._group.pids()]
        rels = [a.isolation["cgroup_path"] for a in agents]
        tag = os.path.join(CGROUP_ROOT, "pids", "clove-gym-test", launcher._tag)
        deadline = time.monotonic() + 5
        while not any(n.startswith("warm-") for n in os.listdir(tag)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(n.startswith("warm-") for n in os.listdir(tag)), "no warm slot's group to leave behind"
        os.kill(launcher._zygote.pid, signal.SIGKILL)  # no chance to clean up: the lifeline does it
        for agent in agents:  # a loop waiting on fileno() learns of it, though no report will come
            assert select.select([agent.fileno()], [], [], 5)[0] == [agent.fileno()]
        for agent in agents:
            assert agent.wait(5) == 128 + signal.SIGKILL
        inits = {a.pid for a in agents}
        assert gone([p for p in pids if p not in inits])
        # with their reaper gone, the inits' zombies are the host init's to reap, nothing runs
        for pid in inits:
            with contextlib.suppress(FileNotFoundError):
                with open(f"/proc/{pid}/stat") as f:
                    assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        launcher.close()
    assert all(cgroup_dirs(rel) == [] for rel in rels)
    assert cgroup_dirs(f"clove-gym-test/{launcher._tag}") == [] and not os.path.exists(launcher._newroot)


def test_running_a_script_imports_nothing_the_zygote_has_not(tmp_path) -> None:
    """Every module the agent's start path imports costs each agent its import time (pkgutil: 2-5 ms
    here), so the child module must pre-import all of it: running a script adds no module."""
    script = tmp_path / "noop.py"
    script.write_text("x = 1\n")
    code = textwrap.dedent(
        f"""
        import runpy, sys
        import clove_gym.runtime.sandbox.child
        before = set(sys.modules)
        runpy.run_path({str(script)!r}, run_name="__main__")
        print(sorted(set(sys.modules) - before))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_agent_starts_with_only_stdio_open(runner) -> None:
    """Nothing of the zygote, the slot or the launcher leaks into the agent: fds 0-2 and the one that
    listing its own fd directory opens."""
    ran = runner.run("import os\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))\n")
    assert ran.status == 0, ran.err
    assert ran.out.strip() == "[0, 1, 2, 3]"


def test_minimal_keeps_exactly_the_paths_no_listed_ancestor_covers() -> None:
    """_minimal (one set lookup per path component) against the definition, on random trees whose names
    share prefixes ("/a/b" does not cover "/a/bc") and include "/"."""
    import random

    from clove_gym.runtime.sandbox.launcher import _minimal

    rng = random.Random(7)
    names = ["a", "b", "bc", "b-c", "c"]
    for _ in range(300):
        paths = ["/" + "/".join(rng.choice(names) for _ in range(rng.randint(1, 4))) for _ in range(8)]
        if rng.random() < 0.05:
            paths.append("/")
        norm = sorted({os.path.normpath(p) for p in paths})
        want = [p for p in norm if not any(q != p and (q == "/" or p.startswith(q + "/")) for q in norm)]
        assert _minimal(paths) == want, paths


def test_a_reply_reaches_its_waiter_while_another_thread_reads(monkeypatch) -> None:
    """Threads share the zygote socket: one reads, the rest wait for what it files. A spawn's reply read
    by a thread that waits for some exit must wake the spawn at once, not when that reader's round ends
    (a plain lock let the reader re-take it round after round: spawns stalled 100-250 ms)."""
    import collections
    import threading

    from clove_gym.runtime.sandbox import launcher as lmod

    monkeypatch.setattr(lmod, "_READ_ROUND", 5.0)  # one read round outlasts the whole test
    launcher = Launcher.__new__(Launcher)  # its messaging only, with the test as the zygote
    launcher._control, zygote = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    launcher._io, launcher._reading = threading.Condition(), False
    launcher._statuses, launcher._ooms, launcher._removed, launcher._live = {}, {}, {}, set()
    launcher._replies = collections.deque()
    try:
        exit_waiter = threading.Thread(
            target=launcher._pump, args=(lambda: 99 in launcher._statuses, 8.0, "an exit"), daemon=True
        )
        exit_waiter.start()
        deadline = time.monotonic() + 2.0
        while not launcher._reading and time.monotonic() < deadline:
            time.sleep(0.01)
        assert launcher._reading, "the exit waiter never became the reader"
        reply = json.dumps({"op": "spawned", "pid": 7, "warm": True, "applied": {}}).encode()
        threading.Timer(0.3, zygote.send, (reply,)).start()  # once the spawn waits for it
        t0 = time.monotonic()
        launcher._pump(lambda: bool(launcher._replies), 3.0, "the spawn")
        waited = time.monotonic() - t0
        assert launcher._replies[0][0]["pid"] == 7
        assert waited < 2.3, f"the reply waited {waited:.2f} s for another thread's read round"
        assert exit_waiter.is_alive()  # still reading: the reply did not wait for it to finish
        launcher._live.add(99)  # before the report: an exit of a pid not live is dropped
        zygote.send(json.dumps({"op": "exit", "pid": 99, "status": 0}).encode())
        exit_waiter.join(8.0)
        assert launcher._statuses == {99: 0} and not exit_waiter.is_alive()
    finally:
        zygote.close()
        launcher._control.close()


def test_without_a_cgroup_a_listed_pid_outside_the_tree_is_never_signalled() -> None:
    """Without a cgroup the tree is found by session (or PID namespace) in /proc; a pid found there may
    be taken by a process outside the tree before the signal. Only a pid still in the tree once a pidfd
    holds it is signalled."""
    agent = AgentProcess.__new__(AgentProcess)  # only what the tree check reads
    agent._pid_ns, agent._session = False, os.getsid(0)
    inside = subprocess.Popen(["sleep", "60"])
    outside = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        agent._signal_members([outside.pid, inside.pid], signal.SIGKILL)
        assert inside.wait(5) == -signal.SIGKILL
        with pytest.raises(subprocess.TimeoutExpired):  # it would be dead within this if it was killed
            outside.wait(0.2)
    finally:
        for proc in (inside, outside):
            proc.kill()
            proc.wait()


# Preloaded by the zygote: holds descriptors up to 1100 first, so that every socket and pipe the zygote
# makes afterwards (slots, status, lifeline, release pipes) is numbered above 1023.
_FD_CEILING = """
import os
import resource

_held = []
while not _held or _held[-1] < 1100:
    _held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
"""


def test_descriptors_above_1023_work_in_the_launcher_and_the_zygote(runner, tmp_path, monkeypatch) -> None:
    """select() refuses descriptors above 1023, and a kernel or zygote with a few hundred agents holds
    that many (a pidfd and a release pipe per agent). With both processes' tables filled past 1100
    first, warm and cold spawns, wait, kill and the zygote's own loop still work."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 1200: cannot hold descriptors past 1100")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        preload = _zygote_hook(tmp_path, monkeypatch, "clove_fd_ceiling", _FD_CEILING)
        idle = runner.script("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
        quick = runner.script("raise SystemExit(5)\n")
        with Launcher(root_cgroup_name="clove-gym-test", pool_size=1, preload=preload) as launcher:
            assert launcher._control.fileno() > 1023
            warm = []  # the first spawn finds no slot ready yet (cold); a later one does (warm)
            for i in range(20):
                agent = launcher.spawn(SpawnSpec(i + 1, f"hi{i}", [sys.executable, idle], {}, None))
                warm.append(agent.isolation["warm_slot"])
                assert min(agent.pidfd, agent.fileno()) > 1023
                assert agent.kill(timeout=2.0) == 128 + signal.SIGTERM
                if any(warm) and not all(warm):
                    break
                time.sleep(0.2)
            assert any(warm) and not all(warm), f"not both paths: warm {warm}"
            done = launcher.spawn(SpawnSpec(9, "quick", [sys.executable, quick], {}, None))
            assert done.wait(10.0) == 5
            zygote_fds = [int(fd) for fd in os.listdir(f"/proc/{launcher._zygote.pid}/fd")]
            assert max(zygote_fds) > 1100 and launcher._zygote.poll() is None
    finally:
        for fd in held:
            os.close(fd)
        if soft < 1200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
