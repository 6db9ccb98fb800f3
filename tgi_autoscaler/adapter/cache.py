"""Single-flight, short-TTL cache: identical reads share one Prometheus query.

The HPA controller, ``kubectl get --raw`` and dashboards often ask for the same metric at the same
moment; the key is the final PromQL, so they are identical exactly when their answers would be. A
read either finds a fresh entry (``hit``), joins a query already in flight (``coalesced``) or starts
one (``miss``). Failures are shared by the readers waiting on that query but never cached, so the
next read after an outage asks again. The load runs as its own task: a client that disconnects
does not cancel the query the others are waiting for. Keep the TTL well under the scrape interval,
or the cache would hide fresh samples.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Generic, TypeVar

__all__ = ["CacheOutcome", "SingleFlightCache"]

K = TypeVar("K")
V = TypeVar("V")


class CacheOutcome(StrEnum):
    HIT = "hit"
    MISS = "miss"
    COALESCED = "coalesced"


class SingleFlightCache(Generic[K, V]):
    """Values by key for ``ttl_s`` seconds, with at most one load per key in flight."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self._ttl = ttl_s
        self._max_entries = max_entries
        self._clock = clock
        self._values: dict[K, tuple[float, V]] = {}
        self._inflight: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._values)

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> tuple[V, CacheOutcome]:
        """The value for ``key``, loading it with ``load`` unless fresh or already loading."""
        entry = self._values.get(key)
        if entry is not None:
            if entry[0] > self._clock():
                return entry[1], CacheOutcome.HIT
            del self._values[key]
        task = self._inflight.get(key)
        if task is not None:
            return await asyncio.shield(task), CacheOutcome.COALESCED
        task = asyncio.ensure_future(self._load(key, load))
        task.add_done_callback(_retrieve_exception)
        self._inflight[key] = task
        return await asyncio.shield(task), CacheOutcome.MISS

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        try:
            value = await load()
        finally:
            self._inflight.pop(key, None)
        if self._ttl > 0:
            self._store(key, value)
        return value

    def _store(self, key: K, value: V) -> None:
        now = self._clock()
        if len(self._values) >= self._max_entries:
            for stale in [k for k, (expires, _) in self._values.items() if expires <= now]:
                del self._values[stale]
            while len(self._values) >= self._max_entries:
                del self._values[next(iter(self._values))]  # oldest insertion first
        self._values[key] = (now + self._ttl, value)

    def clear(self) -> None:
        self._values.clear()


def _retrieve_exception(task: asyncio.Task[V]) -> None:
    # Every waiter may have been cancelled; mark the failure as seen so asyncio does not warn.
    if not task.cancelled():
        task.exception()
