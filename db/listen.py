"""What a LISTEN consumer owes a channel any role may NOTIFY: few log lines, few looks.

PostgreSQL has no privilege for NOTIFY: every login (the BI role's included) may send any
payload on any channel, 20,000 of them in 0.05 s, a million in under a second. So a
notification is a hint that something may have changed, never data and never a unit of
work: the consumers (ml.serving, schema.subscriptions, schema.warehouse, etl.scheduler)
take what is queued at once (:func:`drain`), read from the database what did change, and
let what arrives while they do, or within :data:`INTERVAL_S` of their last look, make one
more look at most.

:class:`SkipLog` is the log of the notifications a consumer skips (a payload it cannot
read, or one the database does not bear out): the first after a quiet interval is logged
at once, the others of that interval are counted and told in one line when :meth:`flush`
is called after it (the consumer calls it whenever it wakes, or on a timer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

INTERVAL_S = 1.0  # a consumer's least time between two looks while notifications keep coming
DRAIN_MAX = 10_000  # notifications taken in one go, at most


def drain(
    conn: psycopg.Connection[Any], timeout: float, each: Callable[[str], None] | None = None
) -> int:
    """The notifications that came within ``timeout``, with every one waiting then, taken
    (DRAIN_MAX at most, so that a flood cannot hold back the look they wake): how many.
    ``each`` sees each payload."""
    heard = 0
    for note in conn.notifies(timeout=timeout, stop_after=1):
        heard += 1
        if each is not None:
            each(note.payload)
    while 0 < heard < DRAIN_MAX:
        more = 0
        for note in conn.notifies(timeout=0.0, stop_after=DRAIN_MAX):
            more += 1
            if each is not None:
                each(note.payload)
        if not more:
            break
        heard += more
    return heard


class SkipLog:
    def __init__(
        self,
        log: logging.Logger,
        channel: str,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self.channel = channel
        self.interval_s = interval_s
        self.clock = clock
        self.total = 0  # every notification skipped
        self._pending = 0  # skipped and not logged yet
        self._example = ""
        self._next = float("-inf")  # when the next line may be written
        self._lock = threading.Lock()

    def skip(self, why: str, payload: str, count: int = 1) -> None:
        """Count ``count`` skipped notifications; log them (and those before) when a line is
        due."""
        with self._lock:
            self.total += count
            self._pending += count
            if self._pending == count:
                self._example = f"{why}: {payload[:200]!r}"
        self.flush()

    @property
    def pending(self) -> int:
        return self._pending

    def flush(self) -> None:
        """Write the line of the skips not logged yet, unless one was written less than an
        interval ago."""
        with self._lock:
            now = self.clock()
            if not self._pending or now < self._next:
                return
            count, example = self._pending, self._example
            self._pending, self._next = 0, now + self.interval_s
        self.log.warning(
            "%s: ignored %s notification(s) (any database role may NOTIFY; logged at most"
            " once every %.0f s), the first: %s",
            self.channel,
            f"{count:,}",
            self.interval_s,
            example,
        )
