"""The open-file limit: raised to the hard limit in the process that holds agents, restored for agents.

The kernel process holds three descriptors per sandboxed agent (its pidfd, its release pipe, its
connection) and the zygote one more. Under the usual soft limit of 1024 that ends at about 330 agents,
with EMFILE from whichever call comes next. The soft limit is that low only for select()'s sake
(FD_SETSIZE is 1024); this runtime waits with poll() and epoll. So, as Go's runtime does for every
program, the soft limit is raised to the hard one, and each agent gets back the soft limit found here,
so that an agent program that still uses select() behaves as it would anywhere else.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading

_lock = threading.Lock()
_found: tuple[int, int] | None = None  # (soft, hard) before the first raise


def raise_soft() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, once; returns the (soft, hard) pair
    found before the first call. A limit that cannot be raised is kept: spawns then fail with a clear
    error when descriptors run out, rather than at start."""
    global _found
    with _lock:
        if _found is None:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            _found = (soft, hard)
            if soft != hard:
                with contextlib.suppress(ValueError, OSError):
                    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return _found


def for_agents() -> tuple[int, int]:
    """The (soft, hard) RLIMIT_NOFILE an agent starts with: the soft limit this process started with,
    under the hard limit it has now."""
    soft, _hard = _found if _found is not None else resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def restore(pid: int) -> None:
    """Give a just-started child (not reaped yet, so `pid` is still its) the agents' limit. For children
    started by subprocess, which has no hook between fork and exec short of preexec_fn (unsafe in a
    threaded process): the child runs its first instructions with the raised limit."""
    with contextlib.suppress(OSError):  # it ended already: nothing to give
        resource.prlimit(pid, resource.RLIMIT_NOFILE, for_agents())


def describe() -> str:
    """The limits and, where a descriptor is left to list them, how many are open: for errors that come
    from running out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        return f"RLIMIT_NOFILE {soft}/{hard}, {len(os.listdir('/proc/self/fd')) - 1} open"  # less listdir's
    except OSError:
        return f"RLIMIT_NOFILE {soft}/{hard}"
