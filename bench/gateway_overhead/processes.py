"""What the servers cost and what else ran: process-tree CPU time and memory, waiting for a quiet server."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from bench.harness import rss_mib


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total = 0.0
    for current in _tree_pids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += rss_mib(current)
    return total


def _tree_pids(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for current in _tree_pids(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def wait_idle(pid: int, limit_s: float = 180.0) -> float:
    """Waits until a server is done with what it does after it says it is ready (background warm-ups):
    below 5 % of a core over two seconds in a row. Returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    last = cpu_seconds(pid)
    while quiet < 4 and time.perf_counter() - started < limit_s:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last < 0.025 else 0
        last = now
    return time.perf_counter() - started


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used since boot (user, nice, system, irq, softirq, steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process and every child it waited for (the servers, the load generators)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system
