"""Lease owners: a dead predecessor on this machine is recognised; nothing else is ever called dead."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from dicomnode.liveness import owner_is_dead, worker_name


def name_of_a_finished_process(index: int = 0) -> str:
    out = subprocess.run([sys.executable, "-c", f"from dicomnode.liveness import worker_name; "
                          f"print(worker_name({index}))"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_worker_name_says_host_pid_index_and_process_identity() -> None:
    host, pid, index, token = worker_name(3).split(":")
    assert (host, pid, index) == (socket.gethostname(), str(os.getpid()), "3")
    assert len(token.split("-")) == 3


def test_a_live_process_is_never_dead() -> None:
    assert not owner_is_dead(worker_name(0))


def test_a_process_that_ended_on_this_machine_is_dead() -> None:
    assert owner_is_dead(name_of_a_finished_process())


def test_a_reused_pid_is_not_the_same_process() -> None:
    host, pid, index, token = worker_name().split(":")
    start, namespace, boot = token.split("-")
    assert owner_is_dead(f"{host}:{pid}:{index}:{int(start) - 1}-{namespace}-{boot}")  # our PID, another start


def test_what_cannot_be_checked_from_here_is_never_called_dead() -> None:
    dead = name_of_a_finished_process()
    host, pid, index, token = dead.split(":")
    start, namespace, boot = token.split("-")
    assert not owner_is_dead(f"another-host:{pid}:{index}:{token}")
    assert not owner_is_dead(f"{host}:{pid}:{index}:{start}-{namespace}1-{boot}")  # another PID namespace
    assert not owner_is_dead(f"{host}:{pid}:{index}:{start}-{namespace}-ffffffff")  # another boot
    assert not owner_is_dead(f"{host}:{pid}:{index}")  # a name written by an older node
    assert not owner_is_dead(None) and not owner_is_dead("") and not owner_is_dead("a:b:c:d")
