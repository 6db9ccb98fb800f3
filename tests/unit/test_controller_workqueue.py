"""The work queue: one pending entry per key, never two workers on one key, re-run after a mid-flight add."""

from __future__ import annotations

import asyncio

import pytest

from tgi_autoscaler.controller.workqueue import WorkQueue

pytestmark = pytest.mark.unit


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_a_key_added_while_processing_is_processed_once_more_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    assert key == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "must not be handed to a second worker while in flight"
    queue.done("a")
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_a_key_not_re_added_is_not_processed_again() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    await queue.get()
    queue.done("a")
    assert len(queue) == 0
    assert queue.in_flight == 0


async def test_concurrent_workers_never_hold_the_same_key() -> None:
    queue: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps: list[int] = []
    processed: list[int] = []

    async def worker() -> None:
        while (key := await queue.get()) is not None:
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0)
            queue.add(key % 3)  # keep re-adding keys that may be in flight elsewhere
            await asyncio.sleep(0)
            active.discard(key)
            processed.append(key)
            queue.done(key)
            if len(processed) > 200:
                queue.shutdown()

    for i in range(6):
        queue.add(i)
    await asyncio.gather(*(worker() for _ in range(4)))
    assert overlaps == []
    assert len(processed) > 200


async def test_get_waits_for_work_and_wakes_on_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    queue.add("x")
    assert await asyncio.wait_for(getter, 1) == "x"


async def test_add_after_delays_and_the_earliest_pending_delay_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 30.0)
    queue.add_after("a", 0.02)  # earlier: replaces the 30 s one
    queue.add_after("a", 10.0)  # later: ignored
    assert queue.delayed == 1
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert queue.delayed == 0


async def test_shutdown_returns_none_to_waiting_workers_and_drops_delayed_work() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("later", 30.0)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shutdown()
    assert await asyncio.wait_for(getter, 1) is None
    assert queue.delayed == 0
    queue.add("after-shutdown")
    assert len(queue) == 0


async def test_work_in_flight_at_shutdown_is_not_requeued() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    await queue.get()
    queue.add("a")
    queue.shutdown()
    queue.done("a")
    assert len(queue) == 0
    assert await queue.get() is None
