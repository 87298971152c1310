"""Identifiers and clock readings decided on the proposing node, never during apply.

ULIDs come from the ``python-ulid`` library (Crockford base32, 26 characters, time-ordered).
"""

from __future__ import annotations

import time

from ulid import ULID


def new_ulid() -> str:
    """A fresh ULID as its 26-character canonical string."""
    return str(ULID())


def now_us() -> int:
    """Current wall-clock time as Unix microseconds (UTC)."""
    return time.time_ns() // 1000


def rfc3339_us(unix_us: int) -> str:
    """Format Unix microseconds as upstream's ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always 6 digits, UTC)."""
    secs, micros = divmod(unix_us, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{micros:06d}Z"
