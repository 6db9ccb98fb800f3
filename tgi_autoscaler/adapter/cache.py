"""Single-flight, short-TTL cache: identical concurrent lookups share one in-flight call.

Two readers use it. Metric reads are keyed by the final PromQL: the HPA controller, ``kubectl get
--raw`` and dashboards often ask for the same metric at the same moment, and two reads are
identical exactly when their answers would be (keep that TTL well under the scrape interval, or
the cache would hide fresh samples). TokenReview and SubjectAccessReview answers are keyed by token
digest or by identity and attributes, so every request through the aggregator does not cost a
round trip to kube-apiserver; Kubernetes' delegated authn/authz keep them 10 s, and ``ttl_of``
lets allow and deny answers have TTLs of their own.

A read either finds a fresh entry (``hit``), joins a call already in flight (``coalesced``) or
starts one (``miss``). Failures are shared by the readers waiting on that call but never cached,
so the next read after an outage asks again. The call runs as its own task: a reader that is
cancelled (a client that disconnects) does not cancel the call the others are waiting for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from enum import StrEnum
from typing import Any, Generic, TypeVar

__all__ = ["CacheOutcome", "SingleFlightCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class CacheOutcome(StrEnum):
    HIT = "hit"
    MISS = "miss"
    COALESCED = "coalesced"
    PREFETCH = "prefetch"  # not this cache's: answered by the grouped prefetch (``prefetch``)


class SingleFlightCache(Generic[K, V]):
    """Values by key for a TTL, with at most one load per key in flight."""

    def __init__(
        self,
        ttl_s: float,
        *,
        ttl_of: Callable[[V], float] | None = None,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ttl_of`` picks a TTL per value (e.g. allow vs. deny); ``ttl_s`` applies otherwise.

        A TTL of 0 still coalesces concurrent loads but keeps nothing.
        """
        if ttl_s < 0:
            raise ValueError(f"ttl_s: must be >= 0 (got {ttl_s})")
        if max_entries < 1:
            raise ValueError(f"max_entries: must be >= 1 (got {max_entries})")
        self._ttl = ttl_s
        self._ttl_of = ttl_of
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
        self._store(key, value)
        return value

    def _store(self, key: K, value: V) -> None:
        ttl = self._ttl if self._ttl_of is None else self._ttl_of(value)
        if ttl <= 0:
            return
        now = self._clock()
        if key not in self._values and len(self._values) >= self._max_entries:
            for stale in [k for k, (expires, _) in self._values.items() if expires <= now]:
                del self._values[stale]
            while len(self._values) >= self._max_entries:
                del self._values[next(iter(self._values))]  # oldest insertion first
        self._values.pop(key, None)
        self._values[key] = (now + ttl, value)

    def clear(self) -> None:
        self._values.clear()


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    # Every waiter may have been cancelled; mark the failure as seen so asyncio does not warn.
    if not task.cancelled():
        task.exception()
