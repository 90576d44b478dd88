"""`trace summary|export` CLI: help, outputs, and one-line errors with exit status 2 on bad files."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from clove_gym.runtime.trace.cli import main, register
from clove_gym.runtime.trace.writer import TraceWriter


@pytest.fixture
def trace_path(tmp_path):
    path = tmp_path / "run.clvtrace"
    with TraceWriter(path) as w:
        for i in range(5):
            w.record(0, 0x00, 1 + i % 2, 1_000 + i, aux=i + 1, service_ns=100 + i)
        w.record(2, 0x20, 1, 2_000, peer_id=2, aux=1, req=b"{}")
        w.record(3, 0x21, 2, 2_100, peer_id=1, aux=1, req=b"{}")
    return path


def test_register_adds_trace_commands_to_a_parser():
    parser = argparse.ArgumentParser(prog="clove-gym")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["trace", "export", "x.clvtrace", "--format", "perfetto", "-o", "y.json"])
    assert (args.trace_command, args.format, str(args.output), callable(args.func)) == (
        "export", "perfetto", "y.json", True
    )  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["trace", "export", "x.clvtrace", "--format", "csv"])
    assert exc.value.code == 2


@pytest.mark.parametrize("argv", [["trace"], ["trace", "summary"], ["trace", "export"]])
def test_every_subcommand_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    assert "usage: clove-gym trace" in capsys.readouterr().out


def test_summary_tables_and_json(trace_path, capsys):
    assert main(["trace", "summary", str(trace_path)]) == 0
    out = capsys.readouterr().out
    assert "syscall latency" in out and "NOOP" in out
    assert main(["trace", "summary", str(trace_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kinds"]["SYSCALL"] == 5 and summary["service_ns"]["max"] == 104


def test_export_both_formats(trace_path, tmp_path, capsys):
    assert main(["trace", "export", str(trace_path), "--format", "parquet"]) == 0
    assert pq.read_table(tmp_path / "run.parquet").num_rows == 7
    out = tmp_path / "sub.json"
    assert main(["trace", "export", str(trace_path), "--format", "perfetto", "-o", str(out)]) == 0
    events = json.loads(out.read_text())["traceEvents"]
    assert {ev["ph"] for ev in events} == {"M", "X", "s", "f"}
    assert f"wrote {out} (7 records)" in capsys.readouterr().out


def test_cut_trace_is_read_leniently_but_strict_fails(trace_path, tmp_path, capsys):
    trace_path.write_bytes(trace_path.read_bytes()[:-5])
    assert main(["trace", "summary", str(trace_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["file"]["records"] == 6
    assert "warning:" in captured.err and "record 6" in captured.err
    out = tmp_path / "o.json"
    assert main(["trace", "export", str(trace_path), "--format", "perfetto", "-o", str(out), "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(trace_path) in err and "record 6 at byte offset" in err
    assert not out.exists()


def test_bad_inputs_give_one_line_and_status_2(tmp_path):
    """Through a real process: the exit status and stderr a user sees."""
    bad = tmp_path / "bad.clvtrace"
    bad.write_bytes(b"not a trace at all, definitely longer than 32 bytes")
    cases = [
        (["trace", "summary", str(bad)], f"{bad}: file header at byte offset 0: bad magic"),
        (["trace", "summary", str(tmp_path / "missing.clvtrace")], "No such file or directory"),
        (["trace", "export", str(bad), "--format", "parquet"], "bad magic"),
    ]
    for argv, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "clove_gym.runtime.trace.cli", *argv],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and needle in proc.stderr
        assert proc.stdout == ""


def test_unwritable_output_is_a_clean_error(trace_path, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "dir.json"
    assert main(["trace", "export", str(trace_path), "--format", "perfetto", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err
