"""Real-time driver of a queueing model: one asyncio task per replica.

The model is pure and only moves when told the time; this task tells it at every step boundary (and
whenever a request arrives) and hands each generated token to the coroutine waiting for it. Steps
are simulated back to back at their model time even if the event loop wakes up late, so a busy
machine shifts token delivery a little but never changes the model's arithmetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from tgi_autoscaler_dev.sim.model import (
    Accepted,
    GenerationRequest,
    InvalidRequest,
    ReplicaModel,
    Snapshot,
    Submission,
    TokenEvent,
)

__all__ = ["Clock", "ReplicaEngine"]

Clock = Callable[[], float]


class ReplicaEngine:
    """Runs ``model`` against ``clock`` and routes token events to per-request queues."""

    def __init__(self, model: ReplicaModel, *, clock: Clock = time.monotonic) -> None:
        self.model = model
        self._clock = clock
        self._streams: dict[int, tuple[asyncio.Queue[TokenEvent], bool]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="sim-replica-engine")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def submit(
        self, request: GenerationRequest | InvalidRequest, *, every_token: bool = True
    ) -> tuple[Submission, asyncio.Queue[TokenEvent] | None]:
        """Submit now; on acceptance, the returned queue yields the request's tokens in order.

        With ``every_token=False`` only the last token (carrying the completion) is delivered: a
        non-streaming handler then wakes up once per request instead of once per token.
        """
        if not self.running:
            raise RuntimeError("the replica engine is not running")
        submission = self.model.submit(request, self._clock())
        if not isinstance(submission, Accepted):
            return submission, None
        stream: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self._streams[submission.request_id] = (stream, every_token)
        self._idle.clear()
        self._wake.set()
        return submission, stream

    def cancel(self, request_id: int) -> None:
        if self._streams.pop(request_id, None) is not None:
            self.model.cancel(request_id, self._clock())
            self._wake.set()
            self._update_idle()

    def snapshot(self) -> Snapshot:
        return self.model.snapshot()

    async def wait_idle(self) -> None:
        """Return once no request is queued or running."""
        await self._idle.wait()

    def _update_idle(self) -> None:
        if self.model.in_flight == 0:
            self._idle.set()

    def _dispatch(self) -> None:
        for event in self.model.poll(self._clock()):
            route = self._streams.get(event.request_id)
            if route is None:
                continue
            stream, every_token = route
            if event.last:
                stream.put_nowait(event)
                del self._streams[event.request_id]
            elif every_token:
                stream.put_nowait(event)
        self._update_idle()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            self._dispatch()
            deadline = self.model.next_deadline()
            delay = None if deadline is None else max(0.0, deadline - self._clock())
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the wake-up, and stop() would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
