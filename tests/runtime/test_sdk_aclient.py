"""clove_gym.runtime.aclient.AsyncClient against the real kernel, plus protocol faults from a scripted server."""

from __future__ import annotations

import asyncio
import socket

import pytest
from clove_gym.runtime import client as client_mod
from clove_gym.runtime.aclient import AsyncClient
from clove_gym.runtime.client import KernelConnectionError, KernelError, KernelTimeout
from clove_gym.runtime.kernel import Kernel
from clove_gym.runtime.protocol import HEADER_SIZE, Op, encode_frame, parse_header


@pytest.fixture(scope="module")
def kernel():
    with Kernel() as k:
        yield k


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_methods_are_coroutines_with_sdk_results(kernel, tmp_path):
    async def scenario() -> None:
        async with await AsyncClient.connect(kernel.socket_path) as k:
            assert await k.echo("héllo") == "héllo"
            assert k.agent_id > 0
            assert (await k.hello())["protocol_version"] == 1
            assert await k.exit() is True
            reg = await k.register_name("async-self")
            assert reg == {"success": True, "agent_id": k.agent_id, "name": "async-self"}
            assert (await k.send_message({"x": 1}, to_name="async-self"))["delivered_to"] == k.agent_id
            got = await k.recv_messages()
            assert got["messages"][0]["message"] == {"x": 1} and got["messages"][0]["from_id"] == k.agent_id
            assert (await k.store("async:k", [1, 2]))["success"]
            assert (await k.fetch("async:k"))["value"] == [1, 2]
            assert await k.list_agents() == []  # plain connections are not listed
            assert await k.kill() is False  # no target: nothing sent, still awaitable
            assert await k.kill("no-such-agent") is False
            path = tmp_path / "a.txt"
            assert (await k.write_file(str(path), "abc"))["bytes_written"] == 3
            assert await k.read(str(path)) == "abc"
            with pytest.raises(OSError):
                await k.read(str(tmp_path / "missing.txt"))
            ran = await k.exec("echo hi")
            assert ran["stdout"].strip() == "hi" and ran["exit_code"] == 0
            thought = await k.think("hello?")
            assert thought["success"] is False and thought["error"]
            raw = await k.call(Op.NOOP, b"\x00\x01")
            assert raw.payload == b"\x00\x01"
        assert not k.connected

    run(scenario())


def test_concurrent_tasks_keep_request_reply_pairs(kernel):
    async def scenario() -> None:
        k = await AsyncClient.connect(kernel.socket_path)
        texts = [f"task-{i}" for i in range(200)]
        assert await asyncio.gather(*(k.echo(t) for t in texts)) == texts
        await k.close()

    run(scenario())


def test_timeout_and_cancel_leave_the_connection_usable(kernel):
    async def scenario() -> None:
        k = await AsyncClient.connect(kernel.socket_path)
        with pytest.raises(KernelTimeout, match="EXEC: no reply within 0.2 s") as info:
            await k.exec("sleep 0.6", call_timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        assert await k.echo("after-timeout") == "after-timeout"  # the late EXEC reply was skipped
        task = asyncio.create_task(k.exec("sleep 0.6"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await k.echo("after-cancel") == "after-cancel"
        await k.close()

    run(scenario())


async def scripted_server(path: str, reply) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER_SIZE)
                _, _, opcode, size = parse_header(header)
                payload = await reader.readexactly(size)
                out = reply(opcode, payload)
                if out is None:
                    break
                writer.write(out)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    return await asyncio.start_unix_server(handle, path)


@pytest.mark.parametrize(
    ("reply", "error", "message", "closes"),
    [
        (lambda op, p: None, KernelConnectionError, "FETCH: the kernel closed the connection", True),
        (
            lambda op, p: encode_frame(1, Op.STORE, b"{}"),
            KernelError,
            "reply opcode STORE does not match",
            True,
        ),
        (lambda op, p: encode_frame(1, op, b"nope"), KernelError, "FETCH reply is not JSON", False),
    ],
)
def test_protocol_faults_raise(tmp_path, reply, error, message, closes):
    """A fault that leaves the stream out of step closes the connection; a bad payload does not."""

    async def scenario() -> None:
        path = str(tmp_path / "s.sock")
        server = await scripted_server(path, reply)
        k = await AsyncClient.connect(path)
        with pytest.raises(error, match=message):
            await k.fetch("k")
        assert k.connected is not closes
        if closes:
            with pytest.raises(KernelConnectionError, match="not connected"):
                await k.fetch("k")
        await k.close()
        server.close()
        await server.wait_closed()

    run(scenario())


def test_socket_resolution(kernel, tmp_path, monkeypatch):
    async def scenario() -> None:
        with pytest.raises(KernelConnectionError, match="cannot connect to the kernel at .*none.sock"):
            await AsyncClient.connect(str(tmp_path / "none.sock"))
        monkeypatch.setenv("CLOVE_SOCKET", kernel.socket_path)
        k = await AsyncClient.connect()
        assert k.socket_path == kernel.socket_path and await k.echo("env") == "env"
        await k.close()

        from clove_gym.runtime import embedded

        stale = tmp_path / "stale.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(stale))
        dead.close()
        monkeypatch.delenv("CLOVE_SOCKET")
        monkeypatch.setattr(client_mod, "DEFAULT_SOCKET_PATH", str(stale))
        monkeypatch.setattr("clove_gym.runtime.aclient.DEFAULT_SOCKET_PATH", str(stale))
        k = await AsyncClient.connect()
        assert k.socket_path == embedded.socket_path() != kernel.socket_path
        assert await k.echo("embedded") == "embedded"
        await k.close()

    run(scenario())


def test_default_socket_answering_is_used(kernel, monkeypatch):
    monkeypatch.delenv("CLOVE_SOCKET", raising=False)
    monkeypatch.setattr("clove_gym.runtime.aclient.DEFAULT_SOCKET_PATH", kernel.socket_path)

    async def scenario() -> None:
        k = await AsyncClient.connect()
        assert k.socket_path == kernel.socket_path
        assert (await k.hello())["success"]
        await k.close()

    run(scenario())


def test_every_waiting_call_fails_when_the_connection_drops(tmp_path):
    async def scenario() -> None:
        path = str(tmp_path / "drop.sock")
        server = await scripted_server(path, lambda op, p: None)
        k = await AsyncClient.connect(path)
        results = await asyncio.gather(k.hello(), k.fetch("a"), k.echo("b"), return_exceptions=True)
        assert [type(r) for r in results] == [KernelConnectionError] * 3
        assert [str(r).split(":")[0] for r in results] == ["HELLO", "FETCH", "NOOP"]
        server.close()

    run(scenario())


def test_unsolicited_reply_ends_the_connection(tmp_path):
    async def scenario() -> None:
        path = str(tmp_path / "extra.sock")
        server = await scripted_server(path, lambda op, p: encode_frame(1, op, b"{}") * 2)
        k = await AsyncClient.connect(path)
        assert await k.hello() == {}
        for _ in range(100):
            if not k.connected:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(
            KernelConnectionError, match=r"not connected to the kernel \(unsolicited reply frame"
        ):
            await k.hello()
        server.close()

    run(scenario())
