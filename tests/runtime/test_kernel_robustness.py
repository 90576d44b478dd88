"""Faults against a real kernel process: framing errors, vanishing and flooding clients, impersonation,
SIGKILL recovery, and socket ownership. A witness connection must be answered correctly after each.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from clove_gym.benchmarks.bench_server import KernelProcess
from clove_gym.benchmarks.bench_wire import FrameConn
from clove_gym.benchmarks.isolation_probes import cpu_seconds
from clove_gym.runtime.audit import read_audit_file
from clove_gym.runtime.kernel import Kernel, KernelError
from clove_gym.runtime.protocol import HEADER, MAGIC, MAX_PAYLOAD, Op, encode_frame
from clove_gym.runtime.trace.reader import read_trace

NOOP = encode_frame(0, Op.NOOP, b"ping")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
    env["CLOVE_GEMINI_BASE_URL"] = "http://127.0.0.1:9"
    return env


@pytest.fixture(scope="module", params=["native", "python"])
def kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp(f"robust-{request.param}")
    with KernelProcess(
        str(tmp / "k.sock"), python_plane=request.param == "python", env=_env(), cwd=str(tmp)
    ) as k:
        yield k
        assert k.alive(), f"kernel died: {k.stderr_text()[-2000:]}"


def _witness_ok(path: str) -> None:
    with FrameConn(path, timeout=10) as w:
        assert w.call(NOOP) == (Op.NOOP, b"ping")


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


@pytest.mark.parametrize(
    "cut",
    [3, 16, 17, 17 + 40],  # inside the header, header without payload, a partial payload
)
def test_client_vanishing_mid_frame_leaves_the_kernel_serving(kernel: KernelProcess, cut: int) -> None:
    frame = encode_frame(0, Op.STORE, json.dumps({"key": "v", "value": "x" * 100}).encode())
    for _ in range(20):
        s = _raw(kernel.socket_path)
        s.sendall(frame[:cut])
        s.close()
    _witness_ok(kernel.socket_path)


def test_oversized_payload_is_drained_and_answered_then_the_stream_resumes(kernel: KernelProcess) -> None:
    with FrameConn(kernel.socket_path) as c:
        c.send(HEADER.pack(MAGIC, 0, Op.STORE, MAX_PAYLOAD + 1) + b"\0" * (MAX_PAYLOAD + 1) + NOOP)
        op, reply = c.read_frame()
        assert op == Op.STORE
        doc = json.loads(reply)
        assert doc["success"] is False and "too large" in doc["error"]
        assert c.read_frame() == (Op.NOOP, b"ping")
        exact = encode_frame(0, Op.NOOP, b"a" * MAX_PAYLOAD)  # exactly 1 MiB is allowed
        assert c.call(exact) == (Op.NOOP, b"a" * MAX_PAYLOAD)


def test_absurd_payload_size_costs_the_kernel_nothing(kernel: KernelProcess) -> None:
    rss = kernel.rss_bytes()
    socks = []
    for size in (2**63, 2**64 - 1, 2**40):
        s = _raw(kernel.socket_path)
        s.sendall(HEADER.pack(MAGIC, 0, Op.WRITE, size) + os.urandom(256 * 1024))
        socks.append(s)
    _witness_ok(kernel.socket_path)
    assert kernel.rss_bytes() - rss < 16 << 20, "the kernel buffered a payload it had to discard"
    for s in socks:
        s.close()
    _witness_ok(kernel.socket_path)


def test_bad_magic_closes_the_connection_after_answering_what_came_before(kernel: KernelProcess) -> None:
    with FrameConn(kernel.socket_path) as c:
        c.send(NOOP + HEADER.pack(0xDEADBEEF, 0, Op.NOOP, 4) + b"ping")
        assert c.read_frame() == (Op.NOOP, b"ping")
        assert c.closed_by_peer(timeout=10), "the connection stayed open after a bad magic"
    _witness_ok(kernel.socket_path)


def test_header_agent_id_is_ignored_sender_is_the_real_connection(kernel: KernelProcess) -> None:
    with (
        FrameConn(kernel.socket_path) as a,
        FrameConn(kernel.socket_path) as b,
        FrameConn(kernel.socket_path) as m,
    ):
        for c in (a, b, m):
            c.call(NOOP)
        assert len({a.agent_id, b.agent_id, m.agent_id}) == 3
        # m claims to be a in the header, and sends to b
        send = encode_frame(a.agent_id, Op.SEND, json.dumps({"to": b.agent_id, "message": "hi"}).encode())
        m.send(send)
        op, reply = m.read_frame()
        assert m.reply_id == m.agent_id != a.agent_id, "the reply header carried the claimed id"
        assert json.loads(reply)["success"] is True
        op, reply = b.call(encode_frame(a.agent_id, Op.RECV, b'{"max": 10}'))
        assert b.reply_id == b.agent_id
        (msg,) = json.loads(reply)["messages"]
        assert msg["from"] == msg["from_id"] == m.agent_id
        # m claims a's id to read a's mailbox: it gets its own (empty) mailbox
        b.call(encode_frame(0, Op.SEND, json.dumps({"to": a.agent_id, "message": "secret"}).encode()))
        op, reply = m.call(encode_frame(a.agent_id, Op.RECV, b'{"max": 10}'))
        assert m.reply_id == m.agent_id
        assert json.loads(reply)["count"] == 0
        op, reply = a.call(encode_frame(0, Op.RECV, b'{"max": 10}'))
        assert [x["message"] for x in json.loads(reply)["messages"]] == ["secret"]


def test_flooding_client_that_never_reads_is_bounded_and_others_are_served(kernel: KernelProcess) -> None:
    """64 KiB NOOPs as fast as the kernel takes them, replies never read: backpressure must stop the
    kernel reading it before its buffers grow, and everyone else keeps being answered."""
    flood = _raw(kernel.socket_path)
    flood.setblocking(False)
    frame = encode_frame(0, Op.NOOP, b"f" * 65536)
    rss0 = kernel.rss_bytes()
    sent, peak, stalled_since, pending = 0, rss0, None, memoryview(frame)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            n = flood.send(pending)  # a partial send resumes mid-frame: the stream stays in sync
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.5:
                break  # the kernel stopped reading us: backpressure
            time.sleep(0.01)
            continue
        stalled_since = None
        pending = pending[n:] or memoryview(frame)
        if sent // (4 << 20) != (sent + n) // (4 << 20):
            peak = max(peak, kernel.rss_bytes())
            _witness_ok(kernel.socket_path)
        sent += n
    peak = max(peak, kernel.rss_bytes())
    _witness_ok(kernel.socket_path)
    assert stalled_since is not None, f"the kernel accepted {sent >> 20} MiB without ever pushing back"
    assert peak - rss0 < 64 << 20, f"kernel RSS grew {(peak - rss0) >> 20} MiB for one unread client"
    flood.close()
    _witness_ok(kernel.socket_path)


def test_sigkill_leaves_trace_and_audit_readable_and_the_next_start_works(tmp_path: Path) -> None:
    sock, trace, audit = str(tmp_path / "k.sock"), str(tmp_path / "t.clvtrace"), str(tmp_path / "a.jsonl")
    k = KernelProcess(sock, trace_path=trace, audit_path=audit, env=_env(), cwd=str(tmp_path))
    try:
        with FrameConn(sock) as a, FrameConn(sock) as b:
            a.call(NOOP)
            b.call(NOOP)
            a.call(encode_frame(0, Op.SET_PERMS, b'{"level": "readonly"}'))  # a SECURITY audit entry
            for i in range(2000):
                a.send(encode_frame(0, Op.SEND, json.dumps({"to": b.agent_id, "message": i}).encode()))
            a.read_frames(2000)
            b.call(encode_frame(0, Op.RECV, b'{"max": 10000}'))
            time.sleep(0.3)  # past one flush tick, so some records are on disk
            a.send(NOOP * 500)  # and some still in flight when it dies
            k.kill()
    finally:
        k.stop()
    tf = read_trace(trace)  # lenient: a torn tail is reported, not raised
    assert tf.records, f"no record survived the crash ({tf.stop_reason})"
    assert {r.name for r in tf.records} >= {"SEND"}
    entries = read_audit_file(audit)
    assert any(e["event_type"] == "PERMISSIONS_CHANGED" for e in entries), entries[-5:]
    assert os.path.exists(sock), "expected the dead kernel's socket file to be left behind"
    with KernelProcess(sock, trace_path=trace + "2", env=_env(), cwd=str(tmp_path)) as again:
        _witness_ok(sock)
        assert again.alive()


def test_a_live_socket_is_never_stolen(kernel: KernelProcess) -> None:
    with pytest.raises(KernelError, match="live kernel"):
        Kernel(kernel.socket_path).start()
    _witness_ok(kernel.socket_path)


def test_spawn_needs_the_spawn_right(kernel: KernelProcess, tmp_path: Path) -> None:
    """C14 'unchecked spawn permission': a connection without can_spawn must not start processes."""
    marker = tmp_path / "spawned"
    script = tmp_path / "agent.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    with FrameConn(kernel.socket_path) as c:
        c.call(encode_frame(0, Op.SET_PERMS, b'{"level": "minimal"}'))
        _op, perms = c.call(encode_frame(0, Op.GET_PERMS, b""))
        assert json.loads(perms)["permissions"]["can_spawn"] is False
        _op, reply = c.call(encode_frame(0, Op.SPAWN, json.dumps({"script": str(script)}).encode()))
        time.sleep(1.0)
        assert json.loads(reply).get("success") is False, f"SPAWN without can_spawn was allowed: {reply!r}"
        assert not marker.exists()


def test_replay_cannot_act_as_another_agent(kernel: KernelProcess) -> None:
    """REPLAY_START re-executes recorded requests under their recorded agent ids; a client must not be
    able to forge a recording and so send (or write, or set permissions) as another live agent."""
    with (
        FrameConn(kernel.socket_path) as victim,
        FrameConn(kernel.socket_path) as bob,
        FrameConn(kernel.socket_path) as mallory,
    ):
        for c in (victim, bob, mallory):
            c.call(NOOP)
        forged = [
            {
                "sequence_id": 1,
                "agent_id": victim.agent_id,
                "opcode": int(Op.SEND),
                "payload": json.dumps({"to": bob.agent_id, "message": "from victim, honest"}),
                "response": "{}",
            }
        ]
        _op, reply = mallory.call(
            encode_frame(
                0, Op.REPLAY_START, json.dumps({"recording": json.dumps(forged), "strict": False}).encode()
            )
        )
        time.sleep(0.5)  # replay runs on the kernel tick
        _op, got = bob.call(encode_frame(0, Op.RECV, b'{"max": 10}'))
        forged_msgs = [m for m in json.loads(got)["messages"] if m["from"] == victim.agent_id]
        assert not forged_msgs, f"mallory sent as agent {victim.agent_id} through REPLAY_START ({reply!r})"


def test_a_bug_in_one_event_is_reported_and_the_kernel_serves_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A handler that raises outside a syscall (a worker's completion, a watched fd's callback, a
    connection's read) must not end the loop, and with it every agent: it is reported on stderr and
    counted, a connection it hit is closed, and the kernel serves on."""
    with Kernel(str(tmp_path / "k.sock")) as k:
        k.call_soon(lambda: 1 / 0)
        r, w = os.pipe()
        k.call_soon(
            lambda: k._sel.register(r, selectors.EVENT_READ, lambda _f, _m: [os.read(r, 1), [].pop()])
        )
        os.write(w, b"x")
        read = k._read

        def read_once_broken(conn) -> None:
            k._read = read
            raise RuntimeError("injected failure reading a connection")

        with FrameConn(k.socket_path) as good:
            good.call(NOOP)
            k._read = read_once_broken
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
                bad.connect(k.socket_path)
                bad.sendall(NOOP)
                bad.settimeout(5.0)
                with contextlib.suppress(ConnectionResetError):  # closed with the frame unread
                    assert bad.recv(64) == b"", "the connection whose read raised was not closed"
            k.call_soon(lambda: k._sel.unregister(r))
            good.call(NOOP)
        _witness_ok(k.socket_path)
        assert k.stats["internal_errors"] >= 3
        os.close(r)
        os.close(w)
    err = capfd.readouterr().err
    assert "internal error in a job from a worker thread" in err and "ZeroDivisionError" in err
    assert "IndexError" in err and "injected failure reading a connection" in err


def test_a_deferred_answer_that_fails_closes_its_connection_at_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A request answered from a worker whose answer cannot be sent (a bug in _complete) must not leave
    its client waiting out its own timeout: the failure is reported and the client sees EOF at once."""
    with Kernel(str(tmp_path / "k.sock")) as k:
        complete = k._complete

        def complete_once_broken(*args) -> None:
            k._complete = complete
            raise RuntimeError("injected failure answering")

        # LIST, answered from a worker with its own payload: a deferred request under our control
        k._handlers[Op.LIST] = lambda aid, op, payload, conn: k.defer(conn, op, payload, lambda: payload)
        with FrameConn(k.socket_path) as good:
            good.call(NOOP)
            k._complete = complete_once_broken
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
                bad.connect(k.socket_path)
                bad.sendall(encode_frame(0, Op.LIST, b"x"))
                bad.settimeout(5.0)
                t0 = time.monotonic()
                with contextlib.suppress(ConnectionResetError):
                    assert bad.recv(64) == b"", "the connection got an answer after all"
                assert time.monotonic() - t0 < 4.0
            assert good.call(encode_frame(0, Op.LIST, b"y")) == (Op.LIST, b"y")
        _witness_ok(k.socket_path)
        assert k.stats["internal_errors"] == 1
    err = capfd.readouterr().err
    assert "internal error in answering a deferred request of agent" in err
    assert "injected failure answering" in err


def test_a_stop_asked_before_serving_is_kept(tmp_path) -> None:
    """A signal that arrives between bind() and serve_forever() must not be overwritten by the start
    of serving: serve_forever() returns at once and cleans up."""
    k = Kernel(str(tmp_path / "k.sock"))
    k.bind()
    k.request_stop()
    t0 = time.monotonic()
    k.serve_forever()
    assert time.monotonic() - t0 < 2.0
    assert not os.path.exists(k.socket_path)


def test_a_request_deferred_until_an_fd_is_readable(tmp_path: Path) -> None:
    """defer_until_readable: once the fd turns readable, `attempt` answers on the kernel thread and
    `work` never runs; when `attempt` cannot tell, or the deadline comes first, `work` answers from a
    worker. The caller may close its fd at once (the kernel waits on a duplicate of its own), and a
    stop with a wait still pending closes that duplicate."""
    with Kernel(str(tmp_path / "k.sock")) as k:
        kernel_thread = k._thread.ident
        pipes: dict[bytes, int] = {}  # payload -> write end
        calls: list[tuple[str, bytes, bool]] = []  # what ran, for which request, on the kernel thread?

        def handler(aid: int, op: int, payload: bytes, conn):
            r, pipes[payload] = os.pipe()

            def ran(what: str) -> bytes:
                calls.append((what, payload, threading.get_ident() == kernel_thread))
                return f"{what}:".encode() + payload

            attempt = (lambda: ran("attempt") and None) if payload == b"unsure" else lambda: ran("attempt")
            deadline = time.monotonic() + (1.0 if payload == b"late" else 60.0)
            reply = k.defer_until_readable(
                conn, op, payload, r, attempt, lambda: ran("work"), bytes, deadline
            )
            os.close(r)
            return reply

        k._handlers[Op.LIST] = handler
        for payload, answer, expected in [
            (b"ready", b"attempt:ready", [("attempt", b"ready", True)]),
            (b"unsure", b"work:unsure", [("attempt", b"unsure", True), ("work", b"unsure", False)]),
            (b"late", b"work:late", [("work", b"late", False)]),
        ]:
            calls.clear()
            with FrameConn(k.socket_path, timeout=10.0) as conn:
                conn.send(encode_frame(0, Op.LIST, payload))
                deadline = time.monotonic() + 5.0
                while payload not in pipes and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.1)
                assert calls == [], f"{payload!r}: answered before its fd was readable or its deadline"
                if payload != b"late":
                    os.write(pipes[payload], b"x")
                assert conn.read_frame() == (Op.LIST, answer)
            assert calls == expected, payload
        with FrameConn(k.socket_path, timeout=10.0) as conn:
            conn.send(encode_frame(0, Op.LIST, b"pending"))
            deadline = time.monotonic() + 5.0
            while not k._fd_waits and time.monotonic() < deadline:
                time.sleep(0.01)
            (pending,) = k._fd_waits
            pipe = os.fstat(pending).st_ino
            k.stop()
        with contextlib.suppress(OSError):  # closed by the stop, not leaked (its number may be reused)
            assert os.fstat(pending).st_ino != pipe
        assert k.stats["internal_errors"] == 0
        for w in pipes.values():
            os.close(w)


# A kernel whose descriptors run out after a few connections: the soft limit is set just above what it
# holds once started. Prints its pid, then serves until stdin closes.
_STARVED_KERNEL = """
import os, resource, sys
from clove_gym.runtime.kernel import Kernel
with Kernel(sys.argv[1]) as k:
    lowest = os.dup(0)  # the lowest free descriptor: connections get this and the next ones
    os.close(lowest)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + 4, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(os.getpid(), flush=True)
    sys.stdin.read()
"""


def test_out_of_descriptors_the_kernel_sets_accepting_aside_instead_of_spinning(tmp_path) -> None:
    """A connection that cannot be accepted (EMFILE) stays in the listener's backlog, so the listener
    stays readable: accepting again at once spun the loop at full CPU. The kernel now sets the listener
    aside for a tick at a time, serves its clients meanwhile, and accepts the waiting one once a
    descriptor is free."""
    path = str(tmp_path / "k.sock")
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARVED_KERNEL, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        text=True,
    )
    conns: list[FrameConn] = []
    try:
        pid = int(proc.stdout.readline())
        for _ in range(4):
            conns.append(FrameConn(path, timeout=10))
            assert conns[-1].call(NOOP) == (Op.NOOP, b"ping")
        waiting = _raw(path)  # connected, in the backlog: no descriptor is left to accept it with
        waiting.sendall(NOOP)
        waiting.settimeout(0.5)
        with pytest.raises(TimeoutError):
            waiting.recv(1)
        before = cpu_seconds(pid)
        time.sleep(1.0)
        spent = cpu_seconds(pid) - before
        assert spent < 0.3, f"the kernel used {spent:.2f} s of CPU in 1 s while out of descriptors"
        assert conns[0].call(NOOP) == (Op.NOOP, b"ping")  # its clients are still served
        conns.pop().close()
        waiting.settimeout(5)
        header = waiting.recv(HEADER.size, socket.MSG_WAITALL)
        assert HEADER.unpack(header)[2] == Op.NOOP
    finally:
        for conn in conns:
            conn.close()
        proc.stdin.close()
        proc.wait(10)
    err = proc.stderr.read()
    assert err.count("cannot accept connections: Too many open files (RLIMIT_NOFILE") == 1, err
