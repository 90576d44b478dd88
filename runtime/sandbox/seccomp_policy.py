"""The seccomp filter every sandboxed agent runs under: deny what an agent never needs, allow the rest.

Built with libseccomp (through the `pyseccomp` ctypes binding) rather than a hand-assembled BPF program:
libseccomp resolves syscall numbers per architecture and adds the checks that stop a process from
dodging the filter through the i386 or x32 entry points, which a hand-written filter easily gets wrong.
The filter is compiled to BPF once (in the zygote) and each child installs the bytes with one prctl, after
setting no_new_privs so no set-uid program can regain privileges.
"""

from __future__ import annotations

import ctypes
import errno
import os

from . import syscalls

# Syscalls an agent never needs; each fails with EPERM.
DENIED_SYSCALLS: tuple[str, ...] = (
    # io_uring bypasses seccomp for the operations it performs
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    # inspecting or driving other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    # filesystem namespace changes
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    # namespace games
    "unshare",
    "setns",
    # the kernel itself
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "iopl",
    "ioperm",
    "keyctl",
    "add_key",
    "request_key",
    # host clocks
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
)

# clone() flags that would create namespaces; clone3 passes flags in memory seccomp cannot read, so it
# fails with ENOSYS and libc falls back to clone(), whose flags the filter can check.
_NAMESPACE_FLAGS = (
    syscalls.CLONE_NEWNS,
    syscalls.CLONE_NEWCGROUP,
    syscalls.CLONE_NEWUTS,
    syscalls.CLONE_NEWIPC,
    syscalls.CLONE_NEWUSER,
    syscalls.CLONE_NEWPID,
    syscalls.CLONE_NEWNET,
    syscalls.CLONE_NEWTIME,
)


def available() -> bool:
    """True when libseccomp and its binding can be loaded here."""
    try:
        import pyseccomp  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def compile_program() -> bytes:
    """The filter as raw BPF (struct sock_filter array); raises ImportError/OSError without libseccomp."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (ValueError, RuntimeError, OSError):
            continue  # not a syscall on this architecture (e.g. iopl elsewhere)
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _NAMESPACE_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as out:
            f.export_bpf(out)
        with os.fdopen(read_end, "rb") as src:
            return src.read()
    except BaseException:
        os.close(read_end)
        raise


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


def install(program: bytes) -> None:
    """Set no_new_privs and install `program` on the calling thread (irreversible)."""
    if not program or len(program) % 8:
        raise ValueError(
            f"seccomp program: {len(program)} bytes is not a whole number of 8-byte instructions"
        )
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    if syscalls._libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
