"""A trace as a pandas DataFrame: one row per record, names resolved, times in ns and wall-clock."""

from __future__ import annotations

import numpy as np
import pandas as pd
from clove_gym.runtime.protocol import opcode_name
from clove_gym.runtime.trace.format import EVENT_NAMES, Kind, Result
from clove_gym.runtime.trace.reader import TraceFile

_RESULT_NAMES = {r.value: r.name for r in Result}
_INT_COLUMNS: dict[str, str] = {
    "index": "int64",
    "offset": "int64",
    "kind": "uint8",
    "opcode": "uint8",
    "agent_id": "uint32",
    "peer_id": "uint32",
    "aux": "uint64",
    "t_ns": "uint64",
    "service_ns": "uint32",
    "queue_ns": "uint32",
    "world_id": "uint32",
    "result": "uint8",
    "req_size": "uint32",
    "resp_size": "uint32",
}


def to_dataframe(trace: TraceFile) -> pd.DataFrame:
    """Columns: the record fields, kind_name, opcode_name (None for events), event_name (events only),
    name (either), result_name, wall_ns and wall_time (UTC), and the stored req/resp bytes."""
    recs = trace.records
    cols: dict[str, object] = {
        name: np.fromiter((getattr(r, name) for r in recs), dtype=dtype, count=len(recs))
        for name, dtype in _INT_COLUMNS.items()
    }
    is_event = [r.kind == Kind.EVENT for r in recs]
    cols["kind_name"] = [r.kind_name for r in recs]
    cols["opcode_name"] = [
        None if ev else opcode_name(r.opcode) for r, ev in zip(recs, is_event, strict=True)
    ]
    cols["event_name"] = [
        EVENT_NAMES.get(r.opcode, f"EVENT_{r.opcode}") if ev else None
        for r, ev in zip(recs, is_event, strict=True)
    ]
    cols["name"] = [r.name for r in recs]
    cols["result_name"] = [_RESULT_NAMES.get(r.result, f"RESULT_{r.result}") for r in recs]
    wall_ns = cols["t_ns"].astype(np.int64) - np.int64(trace.mono_ns) + np.int64(trace.wall_ns)  # type: ignore[union-attr]
    cols["wall_ns"] = wall_ns
    cols["wall_time"] = pd.to_datetime(wall_ns, unit="ns", utc=True)
    cols["req"] = [r.req for r in recs]
    cols["resp"] = [r.resp for r in recs]
    return pd.DataFrame(cols)
