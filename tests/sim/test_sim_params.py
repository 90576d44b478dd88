"""Parameter file: round trip and refusals naming the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from clove_gym.sim.params import HwParams, ParamsError


def test_round_trip(tmp_path: Path) -> None:
    p = HwParams(agents=16, depth=4, weights=(2,) * 16, quantum=2, max_cost=2)
    assert HwParams.load(p.save(tmp_path / "p.json")) == p


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"agents": 6}, "agents=6"),
        ({"depth": 0}, "depth=0"),
        ({"max_cost": 2}, "max_cost=2"),
        ({"weights": (1, 2)}, "weights: 2 given for 8"),
        ({"bucket_rate": -1}, "bucket_rate=-1"),
    ],
)
def test_invalid(kw: dict, match: str) -> None:
    with pytest.raises(ParamsError, match=match):
        HwParams(**kw).validate()


def test_bad_files(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text("{")
    with pytest.raises(ParamsError, match="not JSON"):
        HwParams.load(f)
    f.write_text('{"version": 1, "params": {"agnets": 8}}')
    with pytest.raises(ParamsError, match="unknown parameter"):
        HwParams.load(f)
    with pytest.raises(ParamsError, match="cannot read"):
        HwParams.load(tmp_path / "missing.json")
