"""Our asyncio SDK: every `Client` method as a coroutine over asyncio Unix streams.

    from clove_gym.runtime.aclient import AsyncClient

    async with await AsyncClient.connect() as kernel:
        await kernel.register_name("watcher")
        events = await kernel.poll_events(50)

Methods, arguments, results, errors and socket resolution are those of `client.Client` (they are the
same method bodies, `client.SyscallApi`). Concurrent tasks share one connection safely and without
waiting for each other: each request is written whole in one step, the kernel answers each connection
in request order (C9), and one reader task hands the replies, in that order, to a FIFO of waiting
futures. A call that times out or is cancelled leaves its future behind; its late reply is dropped.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from clove_gym.runtime.client import (
    _RECV_CHUNK,
    DEFAULT_SOCKET_PATH,
    DEFAULT_TIMEOUT,
    KernelConnectionError,
    KernelError,
    KernelTimeout,
    Reply,
    ReplyBuffer,
    SyscallApi,
    check_reply,
    embedded_socket_path,
)
from clove_gym.runtime.protocol import encode_frame, opcode_name

T = TypeVar("T")


async def _open(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_unix_connection(path)
    except OSError as exc:
        raise KernelConnectionError(f"cannot connect to the kernel at {path}: {exc}") from None


class AsyncClient(SyscallApi):
    """Coroutine client; create it with `await AsyncClient.connect(path)`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        socket_path: str,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reader = reader
        self._writer: asyncio.StreamWriter | None = writer
        self._pending: deque[tuple[int, asyncio.Future[Reply]]] = deque()
        self._agent_id = 0
        self._closed_because = ""
        self._reading = asyncio.get_running_loop().create_task(self._read_replies())

    @classmethod
    async def connect(
        cls, socket_path: str | None = None, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncClient:
        """Connect: explicit path > $CLOVE_SOCKET > live /tmp/clove.sock > the embedded kernel."""
        path = socket_path or os.environ.get("CLOVE_SOCKET")
        if not path:
            try:
                reader, writer = await asyncio.open_unix_connection(DEFAULT_SOCKET_PATH)
            except OSError:
                path = await asyncio.to_thread(embedded_socket_path)
            else:
                return cls(reader, writer, DEFAULT_SOCKET_PATH, timeout)
        reader, writer = await _open(path)
        return cls(reader, writer, path, timeout)

    @property
    def agent_id(self) -> int:
        return self._agent_id

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def close(self) -> None:
        self._fail(KernelConnectionError, "the connection was closed by the client")
        self._reading.cancel()
        try:
            await self._reading
        except asyncio.CancelledError:
            pass

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _const(self, value: T) -> Coroutine[Any, Any, T]:  # type: ignore[override]
        async def done() -> T:
            return value

        return done()

    def _roundtrip(  # type: ignore[override]
        self, opcode: int, payload: bytes, timeout: float | None, decode: Callable[[Reply], T]
    ) -> Coroutine[Any, Any, T]:
        return self._exchange(opcode, payload, timeout, decode)

    async def _exchange(
        self, opcode: int, payload: bytes, timeout: float | None, decode: Callable[[Reply], T]
    ) -> T:
        name = opcode_name(opcode)
        writer = self._writer
        if writer is None:
            raise KernelConnectionError(f"{name}: not connected to the kernel ({self._closed_because})")
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending.append((opcode, future))
        writer.write(encode_frame(self._agent_id, opcode, payload))  # whole frame at once: never interleaved
        try:
            async with asyncio.timeout(timeout):
                await writer.drain()
                reply = await future  # a timeout or cancellation cancels it: the reader drops its reply
        except TimeoutError:
            raise KernelTimeout(f"{name}: no reply within {timeout} s") from None
        except OSError as exc:
            self._fail(KernelConnectionError, f"connection to the kernel lost: {exc}")
            raise KernelConnectionError(f"{name}: connection to the kernel lost: {exc}") from None
        return decode(reply)

    async def _read_replies(self) -> None:
        """Pair each reply frame with the oldest waiting request; any fault ends the connection."""
        buffer = ReplyBuffer()
        try:
            while True:
                data = await self._reader.read(_RECV_CHUNK)
                if not data:
                    raise KernelConnectionError("the kernel closed the connection")
                buffer.feed(data)
                while (frame := buffer.pop()) is not None:
                    if not self._pending:
                        raise KernelError(f"unsolicited reply frame ({opcode_name(frame[1])})")
                    opcode, future = self._pending[0]
                    reply = check_reply(opcode, frame)  # a mismatch means the stream is out of step
                    self._pending.popleft()
                    self._agent_id = reply.agent_id
                    if not future.done():
                        future.set_result(reply)
        except KernelConnectionError as exc:
            self._fail(KernelConnectionError, str(exc))
        except KernelError as exc:
            self._fail(KernelError, str(exc))
        except OSError as exc:
            self._fail(KernelConnectionError, f"connection to the kernel lost: {exc}")

    def _fail(self, error: type[KernelError], reason: str) -> None:
        """Close the connection and fail every waiting call with `reason`."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._closed_because = reason
            writer.close()
        while self._pending:
            opcode, future = self._pending.popleft()
            if not future.done():
                future.set_exception(error(f"{opcode_name(opcode)}: {reason}"))
