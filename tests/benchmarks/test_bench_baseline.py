"""The C baseline: compiled on demand into the cache, and its client measures an echo peer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from clove_gym.benchmarks.bench_baseline import BaselineError, EchoServer, build, ping_client


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_build_compiles_once_into_the_cache(cache: Path) -> None:
    first = build("uds_pingpong")
    assert first.is_file() and first.is_relative_to(cache)
    mtime = first.stat().st_mtime_ns
    assert build("uds_pingpong") == first and first.stat().st_mtime_ns == mtime
    assert not list(first.parent.glob("*.tmp"))


def test_build_names_a_missing_source() -> None:
    with pytest.raises(BaselineError, match="no baseline source"):
        build("no_such_baseline")


def test_build_reports_a_missing_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(BaselineError, match="CC=/nonexistent/cc is not an executable"):
        build("uds_pingpong")


def test_ping_pong_round_trips_and_percentiles(tmp_path: Path) -> None:
    with EchoServer(str(tmp_path / "echo.sock"), None) as echo:
        one = ping_client(echo.socket_path, None, rounds=500, size=64)
        many = ping_client(echo.socket_path, None, conns=8, seconds=0.3, size=64)
    assert one["counts"] == [500] and one["samples"] == 500
    assert 0 < one["min_ns"] <= one["p50_ns"] <= one["p99_ns"] <= one["max_ns"]
    assert len(many["counts"]) == 8 and min(many["counts"]) > 0
    assert not Path(echo.socket_path).exists()


def test_client_rejects_bad_arguments_with_usage() -> None:
    res = subprocess.run(
        [str(build("uds_pingpong")), "client", "/x", "0", "0", "0", "0", "64"], capture_output=True, text=True
    )
    assert res.returncode == 2 and "bad arguments" in res.stderr
    res = subprocess.run([str(build("uds_pingpong"))], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr


def test_client_fails_loudly_without_a_server(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="connect"):
        ping_client(str(tmp_path / "nobody.sock"), None, rounds=10)
