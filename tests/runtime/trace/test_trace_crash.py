"""Crash safety: a writer SIGKILLed mid-run leaves a file that reads back whole up to its last flush."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from clove_gym.runtime.trace.reader import read_trace

CHILD = """
import json, sys
from clove_gym.runtime.trace.writer import TraceWriter
w = TraceWriter(sys.argv[1], buffer_size=4096, cap=64)
i = 0
while True:
    w.record(i % 4, 0x20, i % 7, 1000 + i, aux=i, service_ns=i * 3, req=json.dumps({"i": i}).encode(), resp=b"r" * (i % 90))
    i += 1
    if i % 50 == 0:
        w.flush()
        if i == 500:
            print("ready", flush=True)
"""


def test_sigkilled_writer_leaves_a_readable_prefix(tmp_path):
    path = tmp_path / "crash.clvtrace"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while os.path.getsize(path) < 400_000 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    trace = read_trace(path)
    n = len(trace.records)
    assert n >= 500
    for i, rec in enumerate(trace.records):
        assert (rec.index, rec.aux, rec.t_ns, rec.kind, rec.agent_id) == (i, i, 1000 + i, i % 4, i % 7)
        assert (
            json.loads(rec.req) == {"i": i} and rec.resp_size == i % 90 and rec.resp == b"r" * min(i % 90, 64)
        )
    # flushes write whole records; only a write torn by the kill itself can leave a partial last record
    if trace.stop_reason is not None:
        assert "truncated" in trace.stop_reason and 0 < trace.ignored_bytes < 4096
    assert trace.records[-1].offset + 60 + len(trace.records[-1].req) + len(trace.records[-1].resp) == (
        os.path.getsize(path) - trace.ignored_bytes
    )
