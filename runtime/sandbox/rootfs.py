"""The agent's filesystem view: a tmpfs root holding read-only binds of what it may see, nothing else.

An allow-list (bind what is needed into an empty root, then pivot_root) rather than hiding host paths
one by one: anything not listed - host homes, /work, other agents' sockets and files - simply does not
exist inside. Everything here is a mount in the agent's own mount namespace, so it vanishes with the
namespace: nothing to clean up on the host.
"""

from __future__ import annotations

import os

from . import syscalls as sc

_DEVICES = ("null", "zero", "full", "random", "urandom")
_PRESERVED = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC  # statvfs f_flag bits share these values


def _make_target(path: str, like_dir: bool) -> None:
    if like_dir:
        os.makedirs(path, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.lexists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def bind(source: str, target: str, writable: bool) -> None:
    """Bind `source` at `target` (created as needed), read-only unless `writable`; keeps the source's
    nosuid/nodev/noexec flags (a user namespace may not drop them)."""
    _make_target(target, os.path.isdir(source))
    sc.mount(source, target, None, sc.MS_BIND | sc.MS_REC)
    flags = sc.MS_BIND | sc.MS_REMOUNT | sc.MS_NOSUID | sc.MS_NODEV | (os.statvfs(source).f_flag & _PRESERVED)
    if not writable:
        flags |= sc.MS_RDONLY
    sc.mount(None, target, None, flags)


def prepare(newroot: str, binds: list[tuple[str, bool]], tmp_bytes: int) -> None:
    """Assemble the root under `newroot`: tmpfs, /dev, /proc, /tmp and `binds`. Must run as (namespace)
    root inside a new mount namespace and, for /proc to show the agent's own processes, inside its PID
    namespace. A warm slot does this before it knows which agent it will become."""
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # nothing we do propagates to the host
    sc.mount("tmpfs", newroot, "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, "mode=0755,size=4m")
    dev = newroot + "/dev"
    os.makedirs(dev, exist_ok=True)
    sc.mount("tmpfs", dev, "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "mode=0755,size=64k")
    for name in _DEVICES:
        _make_target(f"{dev}/{name}", False)
        sc.mount(f"/dev/{name}", f"{dev}/{name}", None, sc.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "fd/0"), ("stdout", "fd/1"), ("stderr", "fd/2")):
        os.symlink(target, f"{dev}/{name}")
    os.makedirs(f"{dev}/shm")
    sc.mount("tmpfs", f"{dev}/shm", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"mode=1777,size={tmp_bytes}")
    sc.mount(None, dev, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NOEXEC)
    os.makedirs(newroot + "/proc", exist_ok=True)
    sc.mount("proc", newroot + "/proc", "proc", sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC)
    os.makedirs(newroot + "/tmp", exist_ok=True)
    sc.mount("tmpfs", newroot + "/tmp", "tmpfs", sc.MS_NOSUID | sc.MS_NODEV, f"mode=1777,size={tmp_bytes}")
    add_binds(newroot, binds)


def add_binds(newroot: str, binds: list[tuple[str, bool]]) -> None:
    for source, writable in binds:
        if not os.path.lexists(source):
            continue
        target = newroot + source
        if os.path.lexists(target) and os.path.islink(target):
            continue
        if os.path.islink(source) and os.path.dirname(source) == "/":
            # merged-/usr layouts: /bin -> usr/bin etc. are recreated as the same links
            os.symlink(os.readlink(source), target)
            continue
        bind(source, target, writable)


def finish(newroot: str, binds: list[tuple[str, bool]]) -> None:
    """Add the agent's own binds, seal the root read-only and pivot into it: the host tree is gone."""
    add_binds(newroot, binds)
    seal(newroot)
    pivot(newroot)


def seal(root: str) -> None:
    """Make the root tmpfs read-only (its mount points are all made)."""
    sc.mount(None, root, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV)


def pivot(newroot: str) -> None:
    """Make `newroot` the root of this mount namespace and drop the host tree. A warm slot does this
    ahead of time: detaching the host tree waits for an RCU grace period, milliseconds on a busy VM."""
    os.chdir(newroot)
    sc.pivot_root(".", ".")  # stacks the old root on top of the new one ...
    sc.umount2(".", sc.MNT_DETACH)  # ... and detaches it
    os.chdir("/")


def tree_attr(writable: bool) -> int:
    """Mount attributes of an agent bind made with clone_tree (as bind() sets them)."""
    return sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | (0 if writable else sc.MOUNT_ATTR_RDONLY)


def attach(trees: list[tuple[int, str, bool, bool]]) -> None:
    """In a pivoted root: attach detached trees (fd, target path, is a directory, replaces a bind made
    ahead) made by the zygote with clone_tree from host paths this namespace cannot see, then seal the
    root. A bind made ahead whose file was made anew on the host (a restarted kernel's socket) is taken
    off first. A target that is a symlink in the root already (merged-/usr layouts) is left alone, as
    add_binds() does."""
    for fd, target, is_dir, replaces in trees:
        if replaces:
            sc.umount2(target, sc.MNT_DETACH)
        if os.path.islink(target):
            continue
        _make_target(target, is_dir)
        sc.move_tree(fd, target)
    seal("/")
