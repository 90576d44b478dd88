"""The load generator's frame reader (benchmarks/bench_wire.py): frames split over reads and frames larger
than one read come out whole, and reading allocates what arrived, not a fresh receive buffer per read."""

from __future__ import annotations

import socket
import threading
import tracemalloc
from pathlib import Path

import pytest
from clove_gym.benchmarks.bench_wire import FrameConn, WireError
from clove_gym.runtime.protocol import HEADER_SIZE, Op, encode_frame


def _pair(tmp_path: Path) -> tuple[FrameConn, socket.socket]:
    path = str(tmp_path / "w.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    conn = FrameConn(path, timeout=10)
    peer, _ = server.accept()
    server.close()
    return conn, peer


def test_frames_split_or_larger_than_a_read_come_out_whole(tmp_path: Path) -> None:
    conn, peer = _pair(tmp_path)
    with conn, peer:
        big = bytes(range(256)) * 1200  # 300 KiB: more than one read
        data = (
            encode_frame(7, Op.NOOP, b"a") + encode_frame(7, Op.STORE, big) + encode_frame(7, Op.NOOP, b"z")
        )
        peer.sendall(data[:5])  # inside the first header
        sender = threading.Thread(target=peer.sendall, args=(data[5:],))  # more than the socket buffers
        sender.start()
        assert conn.read_frame() == (Op.NOOP, b"a")
        assert conn.read_frame() == (Op.STORE, big)
        assert conn.read_frame() == (Op.NOOP, b"z") and conn.agent_id == 7
        sender.join()
        peer.sendall(encode_frame(7, Op.NOOP, b"cut")[:10])
        peer.shutdown(socket.SHUT_WR)
        with pytest.raises(WireError, match=f"10 of {HEADER_SIZE} bytes read"):
            conn.read_frame()


def test_a_read_allocates_what_arrived_not_a_receive_buffer(tmp_path: Path) -> None:
    conn, peer = _pair(tmp_path)
    with conn, peer:
        frame = encode_frame(1, Op.NOOP, b"ping")
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(200):
                peer.sendall(frame)
                assert conn.read_frame() == (Op.NOOP, b"ping")
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert peak < 262144 // 4, f"{peak} bytes at peak for 200 replies of 4 bytes"
