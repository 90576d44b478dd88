"""Workload traces: compact binary records of every syscall, event and message (see FORMAT.md)."""
