"""Fixtures for kernel tests: a real in-process kernel and a raw framed client (no SDK in between)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import HEADER, HEADER_SIZE, encode_frame


class Raw:
    """A minimal synchronous client speaking frames directly."""

    def __init__(self, path: str, timeout: float = 20.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.agent_id = 0

    def send(self, opcode: int, payload: Any = b"", header_id: int = 0) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.sock.sendall(encode_frame(header_id, opcode, data))

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("kernel closed the connection")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> tuple[int, int, bytes]:
        _magic, agent_id, opcode, size = HEADER.unpack(self._exact(HEADER_SIZE))
        self.agent_id = agent_id
        return agent_id, opcode, self._exact(size)

    def raw(self, opcode: int, payload: Any = b"", header_id: int = 0) -> bytes:
        self.send(opcode, payload, header_id)
        _aid, op, body = self.recv_frame()
        assert op == opcode, f"reply opcode {op:#x} for request {opcode:#x}"
        return body

    def call(self, opcode: int, payload: Any = b"") -> Any:
        return json.loads(self.raw(opcode, payload))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["native", "python"])
def kernel(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Kernel]:
    """A running kernel with a trace and an audit file; once with the C data plane, once with the twin."""
    use_native = request.param == "native"
    k = Kernel(
        trace_path=str(tmp_path / "trace.clvtrace"),
        audit_path=str(tmp_path / "audit.jsonl"),
        use_native=use_native,
    )
    if use_native:
        assert k.native, "the C data plane (clove_gym.native._native.DataPlane) is not built"
    k.start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture
def connect(kernel: Kernel) -> Iterator[Any]:
    clients: list[Raw] = []

    def make() -> Raw:
        c = Raw(kernel.socket_path)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def raw_client() -> type[Raw]:
    """The Raw client class, for tests that run their own kernel."""
    return Raw


@pytest.fixture
def agent_dir(tmp_path: Any) -> Any:
    """A directory for agent scripts that sandboxed agents (other uids) may read."""
    d = tmp_path / "agents"
    d.mkdir()
    d.chmod(0o755)
    return d
