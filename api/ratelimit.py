"""Rate limits that hold for the whole deployment: token buckets in PostgreSQL.

One bucket per principal (``Principal.bucket``) and one per client address for requests
without valid credentials, each ``burst`` tokens refilled at ``rate`` per second; every
operation takes a token (a batch of n takes n) on every transport. The buckets live in
``app.rate_buckets`` (``app.take_tokens``, migration 0009), so every API process and host
shares them: two workers cannot each grant the limit. A refusal costs the database one
statement; a process first refuses locally when its own bucket for the key is already empty
(a local bucket at the same rate can only run dry before the shared one does), which keeps
a flood from one client off the database.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from db.errors import CdmsError, DatabaseUnavailableError, busy_error, from_db_error

MAX_RETRY_AFTER = 3_600  # seconds a 429 tells a client to wait, at most


class RateLimitedError(CdmsError):
    code = "RATE_LIMITED"

    def __init__(self, rate: float, wait_s: float) -> None:
        # whole seconds, 1 to MAX_RETRY_AFTER whatever the rate (NaN and infinity too)
        wait = wait_s if math.isfinite(wait_s) else MAX_RETRY_AFTER
        self.retry_after = max(1, math.ceil(min(wait, MAX_RETRY_AFTER)))
        super().__init__(
            f"rate limit of {rate:g} requests/s exceeded; retry after {self.retry_after} s",
            retryAfter=self.retry_after,
        )


@dataclass
class LocalBuckets:
    """In-process token buckets: the first, free filter in front of the shared ones."""

    rate: float
    burst: int
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, n: int = 1, now: float | None = None) -> float:
        """0 if ``n`` tokens were taken, else the seconds until they could be."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= n:
                self._buckets[key] = (tokens - n, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > 10_000:  # forget idle keys (their buckets are full)
                horizon = self.burst / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < horizon}
            return (n - tokens) / self.rate


_TAKE = sa.text("SELECT app.take_tokens(:bucket, :rate, :burst, :n)")


class RateLimiter:
    """``admit(bucket, n)`` raises RateLimitedError when the shared bucket is empty."""

    def __init__(self, engine: Engine, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limiter needs a positive rate and burst")
        self.engine = engine
        self.rate = rate
        self.burst = burst
        self.local = LocalBuckets(rate, burst)

    def wait(self, bucket: str, n: int = 1) -> float:
        """Seconds to wait (0: admitted). Blocking: one statement."""
        if n > self.burst:
            return math.inf
        local = self.local.take(bucket, n)
        if local > 0:
            return local
        try:
            with self.engine.begin() as conn:
                waited = conn.execute(
                    _TAKE, {"bucket": bucket, "rate": self.rate, "burst": self.burst, "n": n}
                ).scalar_one()
        except sa.exc.DBAPIError as exc:
            raise from_db_error(exc) or DatabaseUnavailableError() from exc
        except sa.exc.TimeoutError:  # no pooled connection free in time
            raise busy_error() from None
        return float(waited)

    def admit(self, bucket: str, n: int = 1, *, retaken: int = 0) -> None:
        """``retaken``: tokens this request took already, which its retry takes again
        before these: the wait told is until the bucket holds both (its true deficit)."""
        wait = self.wait(bucket, n)
        if wait > 0:
            told = wait + retaken / self.rate if math.isfinite(wait) else 1.0
            raise RateLimitedError(self.rate, told)
