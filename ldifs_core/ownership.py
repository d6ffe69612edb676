"""Which process runs a run, and whether it is still alive: what lets a reopened store tell a run that is still
going from one whose process crashed or was restarted (it is then shown as interrupted)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

PROC = Path("/proc")


def current_owner() -> dict[str, object]:
    """Host, pid and start time: together they tell a live owner from a dead one whose pid was reused."""
    pid = os.getpid()
    return {"owner_host": socket.gethostname(), "owner_pid": pid, "owner_started": start_time(pid)}


def owner_alive(host: str | None, pid: int | None, started: str | None) -> bool:
    """Same host, process still there, and not a recycled pid (e.g. pid 1 again in a restarted container)."""
    if host != socket.gethostname() or pid is None:
        return False
    stat = proc_stat(pid)
    if stat is not None:
        state, start = stat
        return state != "Z" and (started is None or start == started)  # a zombie has already exited
    if PROC.is_dir():
        return False  # procfs but no entry: the process is gone
    if os.name == "posix":
        return signal_reaches(pid)
    return pid == os.getpid()  # elsewhere (Windows) only this process can vouch for itself


def owner_gone(host: str | None, pid: int | None, started: str | None) -> bool:
    """Known to have stopped: a process of this host that is no longer there. Stricter than `not owner_alive`
    (another host's process cannot be seen from here), so a store may check it on every read."""
    return host == socket.gethostname() and pid is not None and not owner_alive(host, pid, started)


def start_time(pid: int) -> str | None:
    stat = proc_stat(pid)
    return stat[1] if stat else None


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) from /proc/<pid>/stat; None without procfs or once the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name in (...) may contain spaces
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only probes; safe on POSIX
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    return True
