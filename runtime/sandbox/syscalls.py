"""Thin wrappers over the Linux calls Python 3.11 does not expose (unshare, mount, pivot_root, prctl, and
the new mount API: open_tree, mount_setattr, move_mount).

Written with ctypes because the standard library lacks them before 3.12 (os.unshare) or at all (mount,
pivot_root); they run once per spawn in the forked child, never on a hot path. Each raises OSError with
errno and the call's arguments so a failed sandbox setup says exactly which step broke.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36

_SYS_PIVOT_ROOT = 155  # x86_64
_SYS_OPEN_TREE = 428  # the new mount API (Linux 5.2; mount_setattr 5.12): same numbers on every arch
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data))
    _check(result, f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x})")


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount2({target!r})")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(_libc.syscall(_SYS_PIVOT_ROOT, _b(new_root), _b(put_old)), f"pivot_root({new_root!r})")


class _MountAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def clone_tree(path: str, attr_set: int) -> int:
    """A detached copy of the mount tree at `path` (open_tree OPEN_TREE_CLONE, recursive) with the
    MOUNT_ATTR_* flags `attr_set` added on every mount in it; returns its fd (close-on-exec). The copy
    belongs to no namespace until move_tree() attaches it, so it can be handed to a process that can
    no longer see `path`."""
    fd = _libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, _b(path), _OPEN_TREE_CLONE | os.O_CLOEXEC | _AT_RECURSIVE)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_tree({path!r}): {os.strerror(err)}")
    attr = _MountAttr(attr_set, 0, 0, 0)
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR, fd, b"", _AT_EMPTY_PATH | _AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    if result != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"mount_setattr({path!r}, {attr_set:#x}): {os.strerror(err)}")
    return fd


def move_tree(fd: int, target: str) -> None:
    """Attach the detached tree `fd` (from clone_tree) at `target` in this mount namespace."""
    result = _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", _AT_FDCWD, _b(target), _MOVE_MOUNT_F_EMPTY_PATH)
    _check(result, f"move_mount(fd {fd}, {target!r})")


def prctl(option: int, arg2: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), 0, 0, 0), f"prctl({option}, {arg2})")


def loopback_up() -> None:
    """Bring `lo` up in a fresh network namespace (it starts down, so even 127.0.0.1 would fail)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))
