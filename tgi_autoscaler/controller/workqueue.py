"""A de-duplicating work queue with delayed adds, in the style of client-go's workqueue.

Watch events arrive far faster than reconciles finish (a Deployment rollout alone produces dozens),
but a reconcile always works from the latest cached state, so one pending reconcile per service is
enough. The queue guarantees:

- a key is queued at most once (``dirty`` set);
- a key is never processed by two workers at once (``processing`` set);
- a key added while it is being processed is processed once more after ``done`` (its new state may
  not have been seen), but only once however many times it was added;
- ``add_after`` keeps only the earliest pending delay per key (retries, periodic resync).

After ``shutdown`` no new work is handed out (``get`` returns ``None``); work in flight finishes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._wakeup = asyncio.Event()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys waiting to be handed out (not counting delayed or in-flight ones)."""
        return len(self._queue)

    @property
    def delayed(self) -> int:
        return len(self._delayed)

    @property
    def in_flight(self) -> int:
        return len(self._processing)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay_s: float) -> None:
        """Add ``key`` once ``delay_s`` has passed; an earlier pending add for the key wins."""
        if self._shutting_down:
            return
        if delay_s <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_s
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._delayed[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    async def get(self) -> K | None:
        """The next key to process, marked in flight; ``None`` once the queue is shut down."""
        while not self._queue or self._shutting_down:
            if self._shutting_down:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` finished; if it was added meanwhile, queue it again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._wakeup.set()

    def shutdown(self) -> None:
        """Stop handing out work and cancel delayed adds; callers of ``get`` receive ``None``."""
        self._shutting_down = True
        for _, handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self._wakeup.set()
