"""Who holds a job's lease, and whether that process still runs.

A worker's name (the lease owner written on the job) says where it runs:
``host:pid:index:start-pidns-boot``. ``start`` is the process's start time in clock ticks since
boot (so a reused PID is not taken for the same process), ``pidns`` its PID namespace and ``boot``
the kernel's boot id. A node that restarts after a crash reads the leases of its dead predecessor:
same host, same PID namespace, same boot, and no process with that PID and start time. Those jobs
go back to the queue at once instead of waiting for the lease to expire.

Whatever cannot be checked from here (another host, another container's PID namespace, a name
written by an older node, a system without ``/proc``) is never called dead: only the lease's
expiry frees it, so two live workers never own one job.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

_PROC = Path("/proc")


def _start_ticks(pid: int | str) -> str | None:
    """Field 22 of /proc/PID/stat (start time since boot), or None if there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name start at field 3


def _identity() -> tuple[str, str, str] | None:
    """(start, pid namespace, boot id) of this process; None where /proc cannot tell."""
    try:
        start = _start_ticks("self")
        namespace = os.readlink(_PROC / "self" / "ns" / "pid").strip("pid:[]")
        boot = (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text().strip()[:8]
    except (OSError, IndexError):
        return None
    return (start, namespace, boot) if start else None


_SELF = _identity()


def worker_name(index: int = 0) -> str:
    token = "-".join(_SELF) if _SELF else "unknown"
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{token}"


def owner_is_dead(owner: str | None) -> bool:
    """True only for a lease owner that ran in this kernel and PID namespace and runs no more."""
    if owner is None or _SELF is None:
        return False
    parts = owner.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    pid, token = parts[1], parts[3].split("-")
    if len(token) != 3 or token[1:] != list(_SELF[1:]) or not pid.isdigit():
        return False
    try:
        return _start_ticks(pid) != token[0]
    except (OSError, IndexError):
        return False
