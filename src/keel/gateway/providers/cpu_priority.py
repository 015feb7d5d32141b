"""Worker threads whose CPU work gives way to the rest of the process: long model work (a large
embedding request's batches, generations) runs there, so a small request computing beside it gets the
cores.

Turns (`turns.py`) decide whose work runs next at one model; they cannot stop two models, or two lanes
of one, from computing at once. On two cores a small embedding call beside a bulk batch gets about half
the CPU (each runs a thread per core), and its latency doubles or worse. The kernel's scheduler can
settle that better than any check between batches: these threads run at a higher nice value, and the
compute threads they start (PyTorch's OpenMP team, llama.cpp's, created on a first parallel region)
inherit it. On Linux CFS a thread at nice 19 weighs 15 against 1024 at nice 0: beside a nice-0 thread
it gets ~1.5 % of a core, and alone it gets all of the CPU. Raising one's own nice value needs no
privilege; lowering it back does, so the value is set once, when a thread starts, and the threads only
ever run this work.

Elsewhere than Linux (a nice value is per process there) the threads run at normal priority.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from keel.logs import get_logger

log = get_logger(__name__)

MAX_NICE = 19


def lower_this_thread(nice: int) -> int:
    """Raises the calling thread's nice value to at least `nice` (0-19); returns the value it runs at.
    Linux only: elsewhere, or where the kernel refuses, the thread keeps its priority."""
    if not 0 <= nice <= MAX_NICE:
        raise ValueError(f"a nice value is between 0 and {MAX_NICE}, not {nice}")
    if not sys.platform.startswith("linux"):
        return 0
    thread = threading.get_native_id()
    try:
        # On Linux, PRIO_PROCESS with a thread id sets that thread alone.
        current = os.getpriority(os.PRIO_PROCESS, thread)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, thread, nice)
        return os.getpriority(os.PRIO_PROCESS, thread)
    except OSError as exc:
        log.warning("thread_priority_unchanged", nice=nice, error=str(exc))
        return 0


def low_priority_workers(name: str, nice: int, threads: int = 1) -> ThreadPoolExecutor:
    """`threads` worker threads, each started on first use, running at nice value `nice` (0: unchanged)."""
    return ThreadPoolExecutor(
        max_workers=threads, thread_name_prefix=name, initializer=lower_this_thread, initargs=(nice,)
    )
