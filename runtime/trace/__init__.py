"""Workload traces: compact binary records of every syscall, event and message (see FORMAT.md)."""

from clove_gym.runtime.trace.reader import Record, TraceFile, TraceFormatError, iter_records, read_trace
from clove_gym.runtime.trace.writer import TraceWriter, open_writer

__all__ = [
    "Record",
    "TraceFile",
    "TraceFormatError",
    "TraceWriter",
    "iter_records",
    "open_writer",
    "read_trace",
]
