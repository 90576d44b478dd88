"""Regression test for a kernel race the crash-isolation benchmark found: a spawned agent that connected
before the kernel's loop had run the spawn's completion was stamped with a fresh id instead of its spawn id
(runtime/kernel.py `_on_accept` -> `_spawned_owner(pid)` looked the pid up in `self.agents`, which
runtime/syscalls.py `_spawn` fills, and `_restart` updates via `agent.proc = proc`, only in their
completions on the loop). On a loaded machine the benchmark saw 2-19 of 100 agents, first spawns and
restarts alike, talk under a foreign id. The kernel now holds such connections until the launch completes.

The race is made deterministic: the launcher is the real PlainLauncher, but its spawn() returns only once
the child has connected (what a descheduled worker thread does by accident)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from clove_gym.benchmarks.agents import script
from clove_gym.runtime.agents import PlainLauncher, PlainSpec
from clove_gym.runtime.client import Client
from clove_gym.runtime.kernel import Kernel


class ConnectsFirstLauncher:
    """PlainLauncher whose spawn() returns once the child's marker shows it has connected, and the kernel
    had time to accept the connection."""

    def __init__(self, marker_dir: Path) -> None:
        self.plain = PlainLauncher()
        self.marker_dir = marker_dir
        self.started: dict[str, int] = {}

    def spawn(self, spec: PlainSpec) -> Any:
        proc = self.plain.spawn(spec)
        inc = self.started.get(spec.name, 0)
        self.started[spec.name] = inc + 1
        marker = self.marker_dir / f"{spec.name}.{inc}"
        deadline = time.monotonic() + 30.0
        while not marker.exists():
            assert time.monotonic() < deadline, f"{spec.name} incarnation {inc} never connected"
            time.sleep(0.01)
        time.sleep(0.2)
        return proc

    def close(self) -> None:
        self.plain.close()


def _stamped(client: Client, name: str, inc: int) -> int:
    deadline = time.monotonic() + 30.0
    while not (got := client.fetch(f"isolation/whoami/{name}/{inc}"))["exists"]:
        assert time.monotonic() < deadline, f"{name} incarnation {inc} never reported"
        time.sleep(0.05)
    return got["value"]


def test_spawned_and_restarted_agents_are_stamped_with_their_spawn_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("ISOLATION_WHOAMI_DIR", str(markers))  # the kernel passes its environment on
    kernel = Kernel(str(tmp_path / "k.sock"), launcher=ConnectsFirstLauncher(markers)).start()
    try:
        with Client(kernel.socket_path) as client:
            reply = client.spawn(
                "who", script("isolation_whoami.py"), sandboxed=False, restart_policy="on-failure"
            )
            first, second = _stamped(client, "who", 0), _stamped(client, "who", 1)
            listed = {a["name"]: a for a in client.list_agents()}
    finally:
        kernel.stop()
    assert listed["who"]["id"] == reply["id"] and listed["who"]["restarts"] == 1
    assert (first, second) == (reply["id"], reply["id"]), "connection ids of incarnations 0 and 1"
