"""Trace exports: Parquet (pandas/pyarrow) and Chrome trace-event JSON for Perfetto.

Perfetto layout: one process ("clove kernel"), one thread track per agent. Syscalls are complete
events ("X") starting at dispatch (t_ns + queue_ns) and lasting service_ns; kernel events are
thread-scoped instants ("i"). Each message record is a 2 ns "X" slice at its time; a flow start
("s") inside the MSG_ENQUEUE slice and a flow end ("f") inside the matching MSG_DEQUEUE slice (same
`aux` sequence number), both bound to their enclosing slice ("bp": "e"), draw SEND→RECV arrows. The
flow events sit 1 ns into their slice, so the slice is open at that instant whatever order a viewer
gives events with equal timestamps.

Outputs are written to a temporary file in the target directory, fsynced and renamed over the
target, so a failed or interrupted export never leaves a half-written result.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
from clove_gym.runtime.trace.format import Kind, Result
from clove_gym.runtime.trace.reader import Record, TraceFile
from clove_gym.runtime.trace.table import to_dataframe

KERNEL_PID = 1
MSG_SLICE_US = 0.002  # 2 ns: just long enough to enclose its flow event, placed 1 ns in
FLOW_OFFSET_US = 0.001
PREVIEW_BYTES = 256
_RESULT_NAMES = {r.value: r.name for r in Result}


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that replaces `path` only if the block completes (temp file + fsync + rename)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary shared files
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_metadata(trace: TraceFile) -> dict[str, Any]:
    return {
        "version": trace.version,
        "wall_ns": trace.wall_ns,
        "mono_ns": trace.mono_ns,
        "records": len(trace.records),
        "ignored_bytes": trace.ignored_bytes,
        "stop_reason": trace.stop_reason,
    }


def write_parquet(trace: TraceFile, out: str | os.PathLike[str]) -> None:
    """One row per record (columns of `table.to_dataframe`); file facts in the schema metadata `clvtrace`."""
    table = pa.Table.from_pandas(to_dataframe(trace), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"clvtrace"] = json.dumps(_file_metadata(trace)).encode()
    with atomic_output(out) as f:
        pq.write_table(table.replace_schema_metadata(meta), f)


def _preview(data: bytes, size: int) -> str:
    text = data[:PREVIEW_BYTES].decode("utf-8", errors="replace")
    return text if size <= len(data) else f"{text}… ({size} bytes)"


def _flows(records: list[Record]) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Pair each MSG_DEQUEUE with the MSG_ENQUEUE of the same `aux` (preferring the one whose ends
    match), returning flow ids per enqueue record index and the flow id per dequeue record index."""
    enqueues: dict[int, list[Record]] = {}
    for r in records:
        if r.kind == Kind.MSG_ENQUEUE:
            enqueues.setdefault(r.aux, []).append(r)
    starts: dict[int, list[int]] = {}
    ends: dict[int, int] = {}
    for r in records:
        if r.kind != Kind.MSG_DEQUEUE or r.aux not in enqueues:
            continue
        candidates = enqueues[r.aux]
        src = next(
            (e for e in candidates if e.agent_id == r.peer_id and e.peer_id == r.agent_id), candidates[0]
        )
        flow_id = len(ends) + 1
        starts.setdefault(src.index, []).append(flow_id)
        ends[r.index] = flow_id
    return starts, ends


def _ts0(trace: TraceFile) -> int:
    """Monotonic ns that becomes ts 0: the file's opening or an earlier record, so no ts is negative."""
    return min([trace.mono_ns, *(r.t_ns for r in trace.records)])


def perfetto_events(trace: TraceFile) -> Iterator[dict[str, Any]]:
    """The trace-event dicts, in record order after the track metadata (ts in µs from `_ts0`)."""
    recs = trace.records
    base = _ts0(trace)

    def us(t_ns: int) -> float:
        return round((t_ns - base) / 1000, 3)

    yield {"ph": "M", "pid": KERNEL_PID, "tid": 0, "name": "process_name", "args": {"name": "clove kernel"}}
    for agent in sorted({r.agent_id for r in recs}):
        yield {
            "ph": "M",
            "pid": KERNEL_PID,
            "tid": agent,
            "name": "thread_name",
            "args": {"name": f"agent {agent}"},
        }
        yield {
            "ph": "M",
            "pid": KERNEL_PID,
            "tid": agent,
            "name": "thread_sort_index",
            "args": {"sort_index": agent},
        }
    starts, ends = _flows(recs)
    for r in recs:
        common = {"pid": KERNEL_PID, "tid": r.agent_id}
        if r.kind == Kind.SYSCALL:
            yield common | {
                "ph": "X",
                "cat": "syscall",
                "name": r.name,
                "ts": us(r.t_ns + r.queue_ns),
                "dur": round(r.service_ns / 1000, 3),
                "args": {
                    "seq": r.aux,
                    "result": _RESULT_NAMES.get(r.result, r.result),
                    "queue_ns": r.queue_ns,
                    "service_ns": r.service_ns,
                    "world_id": r.world_id,
                    "req_size": r.req_size,
                    "resp_size": r.resp_size,
                    "req": _preview(r.req, r.req_size),
                    "resp": _preview(r.resp, r.resp_size),
                },
            }
        elif r.kind == Kind.EVENT:
            yield common | {
                "ph": "i",
                "s": "t",
                "cat": "event",
                "name": r.name,
                "ts": us(r.t_ns),
                "args": {"world_id": r.world_id, "event": _preview(r.req, r.req_size)},
            }
        else:
            enqueue = r.kind == Kind.MSG_ENQUEUE
            ts = us(r.t_ns)
            label = (
                f"{'enqueue' if enqueue else 'dequeue'} #{r.aux} {'→' if enqueue else '←'} agent {r.peer_id}"
            )
            yield common | {
                "ph": "X",
                "cat": "msg",
                "name": label,
                "ts": ts,
                "dur": MSG_SLICE_US,
                "args": {"seq": r.aux, "peer": r.peer_id, "via": r.name, "size": r.req_size,
                         "message": _preview(r.req, r.req_size)},
            }  # fmt: skip
            flow_ids = starts.get(r.index, []) if enqueue else [ends[r.index]] if r.index in ends else []
            for flow_id in flow_ids:
                yield common | {
                    "ph": "s" if enqueue else "f",
                    "bp": "e",
                    "cat": "msg",
                    "name": "message",
                    "id": flow_id,
                    "ts": round(ts + FLOW_OFFSET_US, 3),
                }


def write_perfetto(trace: TraceFile, out: str | os.PathLike[str]) -> None:
    """Chrome trace-event JSON (object form), streamed event by event."""
    other = _file_metadata(trace) | {"ts0_mono_ns": _ts0(trace)}
    with atomic_output(out) as f:
        f.write(b'{"displayTimeUnit":"ns","otherData":' + json.dumps(other).encode() + b',"traceEvents":[\n')
        for i, event in enumerate(perfetto_events(trace)):
            f.write((",\n" if i else "").encode() + json.dumps(event, separators=(",", ":")).encode())
        f.write(b"\n]}\n")
