"""Per-person limits that keep one busy (or hostile) person from crowding out the rest."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per key: ``burst`` prompts at once, refilled at ``per_minute``.

    Memory stays bounded: only the most recently seen ``max_keys`` people are kept (a
    forgotten person simply starts with a full bucket again).
    """

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def try_acquire(self, key: str) -> float:
        """Take one token: 0.0 when allowed, else the seconds until the next token."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.pop(key, None) or _Bucket(tokens=self.burst, updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate
