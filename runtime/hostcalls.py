"""Syscalls that touch the host: EXEC, READ, WRITE, HTTP (spec §2.4, §2.5, §2.10).

Each function takes the parsed request and the caller's Permissions and returns the response dict. EXEC
and HTTP block, so the kernel runs them on worker threads. Unlike the reference (C14): no shell splicing of
`cwd` or URLs, EXEC's timeout is enforced (the whole process group is killed), HTTP reports the real
status code, and non-UTF-8 bytes are replaced rather than failing the reply.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from typing import Any

from clove_gym.runtime.permissions import Permissions

MAX_READ_BYTES = 64 << 20
MAX_EXEC_OUTPUT = 16 << 20
MAX_HTTP_BODY = 16 << 20
MAX_TIMEOUT_S = 3600


class BadRequest(ValueError):
    """A field of the request is missing or of the wrong type; str() is the error text."""


def field(req: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """req[key] checked against `kind` (bools are not ints), or `default` when absent or null."""
    value = req.get(key)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise BadRequest(f"invalid request: '{key}' must be {_kind_name(kinds)}")
    if not isinstance(value, kinds):
        raise BadRequest(f"invalid request: '{key}' must be {_kind_name(kinds)}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        dict: "an object",
        list: "a list",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _timeout(req: dict[str, Any], default: int = 30) -> float:
    value = field(req, "timeout", (int, float), default)
    if value <= 0:
        raise BadRequest("invalid request: 'timeout' must be positive")
    return float(min(value, MAX_TIMEOUT_S))


# ---- EXEC ----------------------------------------------------------------------------------------------
def check_exec(req: dict[str, Any], perms: Permissions) -> str | None:
    """Validation done before an EXEC is queued (also for async): the error text, or None."""
    command = field(req, "command", str, "")
    if not command:
        return "command required"
    field(req, "cwd", str)
    _timeout(req)
    return perms.check_exec(command)


def run_exec(req: dict[str, Any], perms: Permissions) -> dict[str, Any]:
    base = {"success": False, "stdout": "", "stderr": "", "exit_code": -1}
    try:
        denied = check_exec(req, perms)
    except BadRequest as exc:
        return {**base, "error": str(exc)}
    if denied:
        return {**base, "error": denied}
    cwd = field(req, "cwd", str) or None
    if cwd is not None and not os.path.isdir(cwd):
        return {**base, "error": f"cwd is not a directory: {cwd}"}
    timeout = _timeout(req)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", req["command"]],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return {**base, "error": f"failed to execute command: {exc.strerror or exc}"}
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return {
            **base,
            "stdout": _text(out[:MAX_EXEC_OUTPUT]),
            "error": f"command timed out after {timeout:g}s (timeout)",
        }
    code = proc.returncode if proc.returncode >= 0 else -1
    return {"success": code == 0, "stdout": _text(out[:MAX_EXEC_OUTPUT]), "stderr": "", "exit_code": code}


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


# ---- READ / WRITE --------------------------------------------------------------------------------------
def read_file(req: dict[str, Any], perms: Permissions) -> dict[str, Any]:
    base = {"success": False, "content": "", "size": 0}
    try:
        path = field(req, "path", str, "")
    except BadRequest as exc:
        return {**base, "error": str(exc)}
    if not path:
        return {**base, "error": "path required"}
    denied = perms.check_read(path)
    if denied:
        return {**base, "error": denied}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not hang the kernel
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {**base, "error": f"failed to open file: not a regular file: {path}"}
            data = f.read(MAX_READ_BYTES + 1)
    except OSError as exc:
        return {**base, "error": f"failed to open file: {exc.strerror or exc}"}
    if len(data) > MAX_READ_BYTES:
        return {**base, "error": f"file too large (more than {MAX_READ_BYTES} bytes)"}
    return {"success": True, "content": _text(data), "size": len(data)}


def write_file(req: dict[str, Any], perms: Permissions) -> dict[str, Any]:
    base = {"success": False, "bytes_written": 0}
    try:
        path = field(req, "path", str, "")
        content = field(req, "content", str, "")
        mode = field(req, "mode", str, "write")
    except BadRequest as exc:
        return {**base, "error": str(exc)}
    if not path:
        return {**base, "error": "path required"}
    denied = perms.check_write(path)
    if denied:
        return {**base, "error": denied}
    data = content.encode("utf-8", "surrogatepass")
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    flags |= os.O_APPEND if mode == "append" else 0  # truncation waits until it is known to be a file
    try:
        fd = os.open(path, flags, 0o644)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {**base, "error": f"failed to open file for writing: not a regular file: {path}"}
            if mode != "append":
                os.ftruncate(fd, 0)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        return {**base, "error": f"failed to open file for writing: {exc.strerror or exc}"}
    return {"success": True, "bytes_written": len(data)}


# ---- HTTP ----------------------------------------------------------------------------------------------
def check_http(req: dict[str, Any], perms: Permissions) -> str | None:
    url = field(req, "url", str, "")
    if not url:
        return "URL required"
    if not url.lower().startswith(("http://", "https://")):
        return "invalid request: 'url' must be http:// or https://"
    method = field(req, "method", str, "GET")
    headers = field(req, "headers", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        return "invalid request: 'headers' must map strings to strings"
    field(req, "body", str)
    _timeout(req)
    return perms.check_http(method, url)


def run_http(req: dict[str, Any], perms: Permissions) -> dict[str, Any]:
    base = {"success": False, "body": "", "status_code": 0}
    try:
        denied = check_http(req, perms)
    except BadRequest as exc:
        return {**base, "error": str(exc)}
    if denied:
        return {**base, "error": denied}
    method = field(req, "method", str, "GET").upper()
    body = field(req, "body", str)
    data = body.encode() if body is not None and method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(req["url"], data=data, method=method, headers=req.get("headers") or {})
    try:
        with urllib.request.urlopen(request, timeout=_timeout(req)) as resp:
            payload = resp.read(MAX_HTTP_BODY)
            return {
                "success": True,
                "body": _text(payload),
                "status_code": resp.status,
                "headers": dict(resp.headers.items()),
            }
    except urllib.error.HTTPError as exc:
        payload = exc.read(MAX_HTTP_BODY) if exc.fp else b""
        return {
            "success": True,
            "body": _text(payload),
            "status_code": exc.code,
            "headers": dict(exc.headers.items()) if exc.headers else {},
        }
    except TimeoutError:
        return {**base, "error": "request timeout"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = str(reason)
        if "timed out" in text:
            text = f"request timeout ({text})"
        return {**base, "error": f"HTTP request failed: {text}"}
