"""Opaque ids that name a request or an answer (`x-request-id`, `chatcmpl-...`).

They are labels, never credentials: nothing is granted to whoever knows one. So a seeded PRNG makes
them, not `uuid4`, whose `os.urandom` is a system call on every request, and each system call on the
event loop's thread is a point where it may wait for the GIL behind a busy worker thread.
"""

from __future__ import annotations

import os
import random

_random = random.Random(os.urandom(16))


def opaque_id() -> str:
    """32 hex digits, as `uuid4().hex` gives."""
    return f"{_random.getrandbits(128):032x}"
