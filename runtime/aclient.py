"""Our asyncio SDK: every `Client` method as a coroutine over asyncio Unix streams.

    from clove_gym.runtime.aclient import AsyncClient

    async with await AsyncClient.connect() as kernel:
        await kernel.register_name("watcher")
        events = await kernel.poll_events(50)

Methods, arguments, results, errors and socket resolution are those of `client.Client` (they are the
same method bodies, `client.SyscallApi`). One connection carries one request at a time: a lock keeps
concurrent tasks' requests and replies paired in order. Cancelling a call or letting it time out
leaves the connection usable; its late reply is skipped.
"""

from __future__ import annotations

import asyncio
import os
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
        self._replies = ReplyBuffer()
        self._lock = asyncio.Lock()
        self._agent_id = 0

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
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass  # already reset by the peer: closed is what we wanted

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
        async with self._lock:
            writer = self._writer
            if writer is None:
                raise KernelConnectionError(f"{name}: not connected to the kernel")
            try:
                writer.write(encode_frame(self._agent_id, opcode, payload))
                await asyncio.wait_for(writer.drain(), timeout)
            except (OSError, TimeoutError) as exc:  # a partly sent frame leaves the stream unusable
                await self.close()
                raise KernelConnectionError(f"{name}: could not send the request: {exc!r}") from None
            try:
                frame = await asyncio.wait_for(self._next_reply(name), timeout)
            except TimeoutError:
                self._replies.stale += 1
                raise KernelTimeout(f"{name}: no reply within {timeout} s") from None
            except asyncio.CancelledError:
                self._replies.stale += 1
                raise
            except KernelError:
                await self.close()
                raise
            except OSError as exc:
                await self.close()
                raise KernelConnectionError(f"{name}: connection to the kernel lost: {exc}") from None
            try:
                reply = check_reply(opcode, frame)
            except KernelError:
                await self.close()
                raise
            self._agent_id = reply.agent_id
        return decode(reply)

    async def _next_reply(self, name: str) -> tuple[int, int, bytes]:
        # read() hands over only bytes it returns, so cancelling it mid-wait loses nothing
        while (frame := self._replies.pop()) is None:
            data = await self._reader.read(_RECV_CHUNK)
            if not data:
                raise KernelConnectionError(f"{name}: the kernel closed the connection")
            self._replies.feed(data)
        return frame
