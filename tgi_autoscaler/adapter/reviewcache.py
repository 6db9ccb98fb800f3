"""A small time-bounded cache with request coalescing for TokenReview and SubjectAccessReview answers.

Every request through the aggregator would otherwise cost the adapter a round trip to kube-apiserver
for authentication and another for authorization. Answers are kept for a short TTL (Kubernetes'
delegated authn/authz use 10 s for both positive and negative answers), and concurrent misses for
the same key share one review instead of stampeding the API server. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ReviewCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    expires_at: float


class ReviewCache(Generic[K, V]):
    """Maps a key to the answer of an async lookup for ``ttl_s`` seconds."""

    def __init__(
        self,
        *,
        ttl_s: float,
        ttl_of: Callable[[V], float] | None = None,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ttl_of`` picks a TTL per answer (e.g. allow vs. deny); ``ttl_s`` applies otherwise."""
        if ttl_s < 0:
            raise ValueError(f"ttl_s: must be >= 0 (got {ttl_s})")
        if max_entries < 1:
            raise ValueError(f"max_entries: must be >= 1 (got {max_entries})")
        self._ttl = ttl_s
        self._ttl_of = ttl_of
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def peek(self, key: K) -> V | None:
        """The cached answer if still fresh (no lookup)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        return entry.value

    async def get(self, key: K, lookup: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """The answer for ``key`` and whether it came from the cache (or a shared in-flight lookup)."""
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry.expires_at > now:
            return entry.value, True
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            value = await lookup()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                # Waiters re-raise it; nobody else needs to observe it.
                future.exception()
            raise
        else:
            future.set_result(value)
            self._store(key, value)
            return value, False
        finally:
            del self._pending[key]

    def _store(self, key: K, value: V) -> None:
        ttl = self._ttl if self._ttl_of is None else self._ttl_of(value)
        if ttl <= 0:
            return
        now = self._clock()
        if key not in self._entries and len(self._entries) >= self._max:
            for k in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[k]
            while len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]  # oldest insertion first
        self._entries.pop(key, None)
        self._entries[key] = _Entry(value, now + ttl)
