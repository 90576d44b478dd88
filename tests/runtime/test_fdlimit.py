"""The open-file limit: raised in the process that holds agents, handed back to agents as it was found.

Each case runs in its own interpreter that first sets the limits under test (here soft and hard are
often equal, which would hide a missing raise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest


def _run(code: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_soft_limit_is_raised_to_the_hard_one_once() -> None:
    seen = _run("""
        import json, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
        from clove_gym.runtime import fdlimit
        first = fdlimit.raise_soft()
        now = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 4096))  # a later raise must not take this as found
        again = fdlimit.raise_soft()
        print(json.dumps({"first": first, "now": now, "again": again, "agents": fdlimit.for_agents(),
                          "describe": fdlimit.describe()}))
    """)
    assert seen["first"] == [256, 4096] and seen["again"] == [256, 4096]
    assert seen["now"] == [4096, 4096]
    assert seen["agents"] == [256, 4096]
    assert seen["describe"].startswith("RLIMIT_NOFILE 300/4096, ") and seen["describe"].endswith(" open")


def test_a_limit_that_cannot_be_raised_is_kept_without_an_error() -> None:
    seen = _run("""
        import json, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from clove_gym.runtime import fdlimit
        print(json.dumps({"found": fdlimit.raise_soft(), "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
    """)
    assert seen == {"found": [64, 64], "now": [64, 64]}


@pytest.mark.skipif(os.geteuid() != 0, reason="sandboxed agents with cgroups need root here")
def test_the_kernel_zygote_and_every_kind_of_agent_get_their_limits() -> None:
    """The kernel process and the zygote run with the raised limit; plain agents, exec'd sandboxed
    agents and those forked from the zygote start with the soft limit the kernel found."""
    seen = _run("""
        import json, os, resource, shutil, sys, tempfile
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))
        from clove_gym.runtime.agents import PlainLauncher, PlainSpec
        from clove_gym.runtime.kernel import Kernel
        from clove_gym.runtime.sandbox import Launcher, SpawnSpec
        PROBE = "import resource; print(*resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)"

        def limits_of(pid):
            with open(f"/proc/{pid}/limits") as f:
                line = next(line for line in f if line.startswith("Max open files"))
            return list(map(int, line.split()[3:5]))

        def output(agent, r):
            agent.wait(10)
            return list(map(int, os.read(r, 100).split()))

        out = {}
        with Kernel() as kernel:
            out["kernel"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
            r, w = os.pipe()
            agent = kernel.launcher.spawn(PlainSpec(1, "plain", [sys.executable, "-c", PROBE], {}, stdout_fd=w))
            os.close(w)
            out["plain"] = output(agent, r)
        where = tempfile.mkdtemp()
        os.chmod(where, 0o755)  # the agent runs under its own uid
        script = os.path.join(where, "probe.py")
        with open(script, "w") as f:
            f.write(PROBE)
        os.chmod(script, 0o644)
        with Launcher(root_cgroup_name="clove-gym-test", pool_size=0) as launcher:
            out["zygote"] = limits_of(launcher._zygote.pid)
            for n, argv in ((2, [sys.executable, "-c", PROBE]), (3, [sys.executable, script])):
                r, w = os.pipe()
                agent = launcher.spawn(SpawnSpec(n, f"fd{n}", argv, {}, None, stdout_fd=w))
                os.close(w)
                out["forked" if agent.isolation["zygote"] else "exec"] = output(agent, r)
        shutil.rmtree(where)
        print(json.dumps(out))
    """)
    assert seen["kernel"] == [4096, 4096] and seen["zygote"] == [4096, 4096]
    assert seen["plain"] == seen["exec"] == seen["forked"] == [256, 4096]
