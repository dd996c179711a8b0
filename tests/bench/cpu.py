"""Where a bench case's time goes: CPU seconds of the database server and of the moto server, read from /proc.

The worker's own CPU is ``time.process_time()`` in its process. The database's is the postmaster's children: the
live ones' CPU plus what exited ones left in the postmaster's children counters (a backend that served a worker
process which has ended is counted there). Linux only, like the rest of the local stack.
"""

import os
from pathlib import Path

import psycopg

from ..paths import REPO_ROOT

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return text[text.rindex(")") + 2 :].split()  # the fields after the command name, which may hold spaces


def process_cpu_s(pid: int, *, exited_children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (its threads included), and of its waited-for children if asked."""
    fields = _stat(pid)
    # After the command: state is field 3 of stat(5), so utime (14) and stime (15) sit at 11 and 12 here, cutime
    # and cstime at 13 and 14.
    ticks = int(fields[11]) + int(fields[12])
    if exited_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text(encoding="ascii").split()
        found += [int(child) for child in children]
    return found


class ServerCpu:
    """The CPU seconds the database cluster and the moto server have used so far."""

    def __init__(self, dsn: str, moto_port: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            backend = conn.info.backend_pid
        self._postmaster = int(_stat(backend)[1])
        pidfile = REPO_ROOT / ".local" / "moto" / f"moto-{moto_port}.pid"
        self._moto = int(pidfile.read_text(encoding="ascii").strip())

    def database_s(self) -> float:
        total = process_cpu_s(self._postmaster, exited_children=True)
        for child in _children(self._postmaster):
            try:
                total += process_cpu_s(child)
            except FileNotFoundError:  # exited between the listing and the read: counted by the postmaster next
                continue
        return total

    def moto_s(self) -> float:
        return process_cpu_s(self._moto)
