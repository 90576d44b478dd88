"""Trace analysis, the sweep and the workload mapping on synthetic traces; bad traces name the record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clove_gym.runtime.protocol import Op
from clove_gym.runtime.trace.format import Kind
from clove_gym.runtime.trace.writer import TraceWriter
from clove_gym.sim.analyze import analyze, occupancy_at_arrivals, write_outputs
from clove_gym.sim.params import HwParams
from clove_gym.sim.sweep import sweep
from clove_gym.sim.synth import synth_trace
from clove_gym.sim.workload import WorkloadError, load_trace, to_events


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("traces") / "synth.clvtrace"
    synth_trace(path, agents=6, seconds=1.0, seed=3)
    return str(path)


def test_occupancy_at_arrivals() -> None:
    assert occupancy_at_arrivals([(0, 10), (1, 3), (2, 5), (4, 6), (11, 12)]) == [0, 1, 2, 2, 0]


def test_analyze_derives_loadable_params(trace: str, tmp_path: Path) -> None:
    result = analyze([trace])
    stats = result["traces"][trace]
    assert stats["agents"] == 6 and stats["think_rate_per_s"] > 0 and stats["message_size"]["p50"] > 2
    occ = stats["queue_occupancy"]
    assert occ["p50"] <= occ["p99"] <= occ["p99.9"] <= occ["max"]
    replay = result["replay"][trace]
    assert replay["decisions"] > 0 and replay["decisions_per_busy_cycle"] >= 0.95
    files = write_outputs(result, [trace], tmp_path, tmp_path / "p.json")
    params = HwParams.load(files["params"])
    assert params.agents == 8 and params.depth >= occ["p99.9"]
    assert Path(files["plot"]).stat().st_size > 10_000
    assert json.loads(Path(files["json"]).read_text())["params"]["agents"] == 8
    assert "queue occ p50/p99/p99.9" in Path(files["table"]).read_text()


def test_sweep_more_depth_never_drops_more(trace: str) -> None:
    rows = sweep([trace], depths=(2, 8, 32), agents=(8,), policies=("drr", "fifo"))
    assert len(rows) == 6
    for policy in ("drr", "fifo"):
        drops = [r["drop_rate"] for r in rows if r["policy"] == policy]
        assert drops == sorted(drops, reverse=True) and drops[0] > 0


def test_broadcast_is_one_send_and_agents_wrap(tmp_path: Path) -> None:
    path = tmp_path / "b.clvtrace"
    with TraceWriter(path) as w:
        for peer in (2, 3, 4):
            w.record(Kind.MSG_ENQUEUE, Op.BROADCAST, agent_id=1, peer_id=peer, t_ns=100, aux=peer)
        w.record(Kind.SYSCALL, Op.THINK, agent_id=9, t_ns=100)
        w.record(Kind.MSG_DEQUEUE, Op.RECV, agent_id=2, peer_id=1, t_ns=5000)
    events = to_events(load_trace(path).records, agents=4, ns_per_cycle=1000)
    assert [(e.cycle, e.send, e.enq, e.recv) for e in events] == [
        (0, (1, 2, 2, True), None, None),
        (0, None, (1, 1), None),
        (4, None, None, 2),
    ]


def test_malformed_traces_name_the_record(trace: str, tmp_path: Path) -> None:
    data = Path(trace).read_bytes()
    cut = tmp_path / "cut.clvtrace"
    cut.write_bytes(data[: 32 + 60 * 3 + 20])
    with pytest.raises(WorkloadError, match=r"record 3 at byte offset 212: truncated"):
        load_trace(cut)
    flipped = bytearray(data)
    flipped[32 + 60 + 60 + 10] ^= 0xFF  # inside record 2's CRC-covered bytes (records are 60 B here)
    bad = tmp_path / "crc.clvtrace"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(WorkloadError, match=r"record 2 at byte offset 152: .*[Cc][Rr][Cc]"):
        load_trace(bad)
    junk = tmp_path / "junk.clvtrace"
    junk.write_bytes(b"not a trace at all, far too short")
    with pytest.raises(WorkloadError, match="file header"):
        load_trace(junk)
    with pytest.raises(WorkloadError, match="cannot read"):
        load_trace(tmp_path / "missing.clvtrace")
    empty = tmp_path / "empty.clvtrace"
    empty.write_bytes(data[:32])
    with pytest.raises(WorkloadError, match="no records"):
        load_trace(empty)
