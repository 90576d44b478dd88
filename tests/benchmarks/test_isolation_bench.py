"""`clove-gym bench isolation --quick`: every figure next to its same-run baselines, JSON written atomically,
the crash scenario's comparison included, bad arguments refused with a message naming them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from clove_gym.benchmarks import isolation_bench
from clove_gym.benchmarks.cli import main
from clove_gym.benchmarks.crash_isolation import MODES
from clove_gym.benchmarks.isolation_probes import (
    BWRAP_MISSING,
    KillTiming,
    bwrap_argv,
    bwrap_kill_ms,
    bwrap_python_argv,
    bwrap_unusable,
    cpu_times,
)

BASELINES = {
    "spawn -> 1st syscall p50": {"cold python3 -c pass", "bwrap --unshare-all /bin/true"},
    "spawn -> 1st syscall p99": {"cold python3 -c pass", "bwrap --unshare-all /bin/true"},
    "sustained spawns/s": {"bwrap, sequential", "cold python3, sequential"},
    "KILL -> all released p99": {"SIGKILL+reap plain child", isolation_bench.KILL_BWRAP},
    "NOOP p50, 100 idle agents": {"same NOOP, no agents"},
    "NOOP p99, 100 idle agents": {"same NOOP, no agents"},
}


def test_quick_run_reports_every_figure_next_to_its_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "isolation", "--quick", "--json", "--out", str(tmp_path)]
    assert main([*argv, "--crash-workers", "12", "--crash-victims", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    on_disk = json.loads((tmp_path / "isolation-latest.json").read_text())
    assert printed == on_disk
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert on_disk["schema"] == isolation_bench.SCHEMA and on_disk["quick"] is True
    assert "unpinned" in on_disk["placement"]
    figs = {f["name"]: f for f in on_disk["figures"]}
    assert set(BASELINES) | {"100 concurrent agents alive"} == set(figs)
    bwrap = bwrap_argv() is not None
    for name, wanted in BASELINES.items():
        f = figs[name]
        assert f["value"] > 0, name
        got = {b[0] for b in f["baselines"]}
        assert wanted <= got | (
            {"bwrap --unshare-all /bin/true", "bwrap, sequential", isolation_bench.KILL_BWRAP}
            if not bwrap
            else set()
        )
        for base, value in f["baselines"]:
            assert value is None and "bwrap" in base and not bwrap or value > 0, (name, base)
    if not bwrap:
        assert any(f"baseline bwrap kill: {bwrap_unusable()}" in n for n in on_disk["notes"])
    assert (
        figs["100 concurrent agents alive"]["value"] == 100 and figs["100 concurrent agents alive"]["passed"]
    )
    spawn = on_disk["samples"]["spawn"]
    assert len(spawn["spawn_to_first_syscall_ms"]) == on_disk["params"]["spawn_n"]
    assert spawn["missing_first_frame"] == []
    assert spawn["isolation"]["namespaces"]["pid"] and spawn["isolation"]["namespaces"]["net"]
    kill = on_disk["samples"]["kill"]
    assert len(kill["released_ms"]) == len(kill["host_steal_ms_during_kill"]) == on_disk["params"]["kill_n"]
    assert all(st >= 0 for st in kill["host_steal_ms_during_kill"])
    assert len(kill["bwrap_kill_init_reap_ms"]) == (on_disk["params"]["kill_n"] if bwrap else 0)
    assert any(n.startswith("KILL and host steal: ") for n in on_disk["notes"])
    crash = on_disk["crash_isolation"]
    assert [r["mode"] for r in crash["results"]] == list(MODES)
    assert crash["scenario"]["workers"] == 12 and crash["scenario"]["victims"] == 3
    cpu = on_disk["host"]["cpu_during"]  # steal and busy shares beside the figures, one row per phase
    assert [c["phase"] for c in cpu] == [
        "spawn latency and rate",
        "kill to released",
        "100 concurrent agents",
        "crash isolation",
    ]
    assert all(0 < c["busy_pct"] <= 100 and 0 <= c["steal_pct"] <= 100 and c["seconds"] > 0 for c in cpu)
    assert any(n.startswith("host CPU by phase") and "kill to released busy" in n for n in on_disk["notes"])


def _running(marker: str) -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def test_bwrap_kill_baseline_times_a_whole_sandbox_and_leaves_nothing() -> None:
    if bwrap_argv() is None:
        pytest.skip(str(bwrap_unusable()))
    marker = f"clove-bwrap-kill-{os.getpid()}"  # in the sandboxed Python's argv, to find it if left behind
    argv = bwrap_python_argv(marker)
    assert argv is not None
    assert 0 < bwrap_kill_ms(argv) < 5000
    assert _running(marker) == []
    sandbox = argv[: argv.index(sys.executable)]
    with pytest.raises(RuntimeError, match="never came up"):  # bwrap cannot exec it: said, not hung
        bwrap_kill_ms([*sandbox, "/nonexistent/python", marker], timeout=5.0)
    with pytest.raises(RuntimeError, match="never came up"):  # runs, never says so: killed, whole
        bwrap_kill_ms([*sandbox, sys.executable, "-c", "import time; time.sleep(60)", marker], timeout=0.5)
    deadline = time.monotonic() + 5  # bwrap's PDEATHSIG is delivered as bwrap dies, the exit may lag
    while _running(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _running(marker) == []


def test_a_bwrap_that_cannot_run_is_reported_with_its_reason_not_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"  # as bwrap fails where it may not make namespaces
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    bwrap_unusable.cache_clear()
    try:
        assert bwrap_unusable() == "bwrap cannot run here: bwrap: No permissions to create new namespace"
        assert bwrap_argv() is None and bwrap_python_argv() is None
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        bwrap_unusable.cache_clear()
        assert bwrap_unusable() == BWRAP_MISSING and bwrap_argv() is None
    finally:
        bwrap_unusable.cache_clear()


def test_steal_note_tells_kills_the_host_stalled_from_the_others() -> None:
    report = isolation_bench.Report(isolation_bench.Params.for_run(True), True)
    kills = [
        KillTiming(1.0, ms, [], steal) for ms, steal in [(3.0, 0.0), (4.0, 0.0), (35.0, 40.0), (5.0, 10.0)]
    ]
    isolation_bench._steal_note(kills, report)
    assert report.notes == [
        "KILL and host steal: 2/4 kills saw steal (>= 1 tick of 10 ms) between KILL and release; "
        "p99 of the 2 others 4.0 ms; over 20 ms: 1, host steal during each: 40 ms"
    ]
    report.notes.clear()
    isolation_bench._steal_note([KillTiming(1.0, 3.0, [], float("nan"))], report)
    assert report.notes == ["KILL and host steal: /proc/stat steal not readable"]


def test_cpu_shares_count_steal_and_busy_from_proc_stat_deltas() -> None:
    # user nice system idle iowait irq softirq steal, in ticks
    before = [100, 0, 50, 1000, 10, 0, 5, 20]
    after = [160, 0, 80, 1100, 10, 0, 15, 40]  # +60 user +30 system +100 idle +10 softirq +20 steal
    assert isolation_bench.cpu_shares(before, after) == {"busy_pct": 45.5, "steal_pct": 9.1}
    assert isolation_bench.cpu_shares([], after) == {"busy_pct": None, "steal_pct": None}
    assert isolation_bench.cpu_shares(after, after) == {"busy_pct": None, "steal_pct": None}
    assert len(cpu_times()) == 8


def test_tables_render_with_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    params = isolation_bench.Params.for_run(True)
    report = isolation_bench.Report(params, True)
    report.figures.append(
        isolation_bench.Figure("sustained spawns/s", "/s", 60.0, [("bwrap", None)], ">= 50/s", True, "n=9")
    )
    report.figures.append(
        isolation_bench.Figure("NOOP p99", "us", 20.0, [("no agents", 10.0)], "reported", None)
    )
    console = Console(width=200, force_terminal=False)
    for table in isolation_bench.render(report):
        console.print(table)
    out = capsys.readouterr().out
    assert "sustained spawns/s" in out and "bwrap: not measured (see the notes)" in out
    assert "2.00x" in out and "info" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agents", "0"], "--agents"),
        (["--crash-workers", "10", "--crash-victims", "10"], "victims: 10 must be fewer than workers (10)"),
        (["--crash-victims", "0"], "victims: expected an integer >= 1"),
        (["--crash-workers", "1"], "workers: expected an integer >= 2"),
    ],
)
def test_bad_arguments_are_refused_naming_them(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "isolation", "--quick", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # refused before measuring anything


def test_non_integer_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "isolation", "--agents", "many"])
    assert exc.value.code == 2
    assert "--agents" in capsys.readouterr().err


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # exited meanwhile
        return ""


def test_sigterm_mid_run_stops_the_kernel_and_agents_and_writes_nothing(tmp_path: Path) -> None:
    """A benchmark ended by SIGTERM (a CI timeout) unwinds like Ctrl-C: its kernel process, zygote and
    agents are gone, its temp dir is removed, no report is written, and it says so in one line."""
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clove_gym.benchmarks.cli",
            "bench",
            "isolation",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        kernel = None
        while kernel is None and time.monotonic() < deadline:
            kids = psutil.Process(bench.pid).children(recursive=True)
            kernel = next((p for p in kids if "bench_server" in _cmdline(p)), None)
            time.sleep(0.05)
        assert kernel is not None, "the benchmark never started its kernel"
        while len(kernel.children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # its zygote, and the zygote's warm slots or agents
        tree = [kernel, *kernel.children(recursive=True)]  # setup processes come and go meanwhile
        assert any("zygote" in _cmdline(p) for p in tree[1:]), f"no sandbox started: {tree}"
        workdir = os.path.dirname(kernel.cmdline()[kernel.cmdline().index("--socket") + 1])
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(30) == 130
        _gone, alive = psutil.wait_procs(tree, timeout=15)
        assert alive == [], f"left running: {[(p.pid, p.name()) for p in alive]}"
        assert not os.path.exists(workdir)
        assert list(tmp_path.iterdir()) == []
        assert "bench isolation: interrupted" in bench.stderr.read().decode()  # type: ignore[union-attr]
    finally:
        bench.kill()
        bench.wait(10)
        bench.stderr.close()  # type: ignore[union-attr]
