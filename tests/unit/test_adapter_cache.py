"""The single-flight cache: hits within the TTL, one load per key in flight, failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from tgi_autoscaler.adapter.cache import CacheOutcome, SingleFlightCache

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache: SingleFlightCache[str, int] = SingleFlightCache(0.5, clock=clock)
    loads: list[int] = []

    async def load() -> int:
        loads.append(1)
        return len(loads)

    assert await cache.get("q", load) == (1, CacheOutcome.MISS)
    clock.now += 0.49
    assert await cache.get("q", load) == (1, CacheOutcome.HIT)
    clock.now += 0.02
    assert await cache.get("q", load) == (2, CacheOutcome.MISS)


async def test_zero_ttl_still_coalesces_but_never_caches() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(0)
    gate = asyncio.Event()
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    first = asyncio.ensure_future(cache.get("q", load))
    second = asyncio.ensure_future(cache.get("q", load))
    await asyncio.sleep(0)
    gate.set()
    assert {await first, await second} == {(1, CacheOutcome.MISS), (1, CacheOutcome.COALESCED)}
    assert await cache.get("q", load) == (2, CacheOutcome.MISS)
    assert len(cache) == 0


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(10)
    gate = asyncio.Event()
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("prometheus down")

    waiters = [asyncio.ensure_future(cache.get("q", failing)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert calls == 1

    async def recovered() -> int:
        return 42

    assert await cache.get("q", recovered) == (42, CacheOutcome.MISS)


async def test_a_cancelled_reader_does_not_cancel_the_shared_query() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(10)
    gate = asyncio.Event()

    async def load() -> int:
        await gate.wait()
        return 5

    impatient = asyncio.ensure_future(cache.get("q", load))
    patient = asyncio.ensure_future(cache.get("q", load))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await patient == (5, CacheOutcome.COALESCED)
    assert impatient.cancelled()


async def test_the_oldest_entries_make_room_when_full() -> None:
    cache: SingleFlightCache[str, str] = SingleFlightCache(60, max_entries=2)

    async def value_of(key: str) -> str:
        return key

    for key in ("a", "b", "c"):
        await cache.get(key, lambda key=key: value_of(key))  # type: ignore[misc]
    assert len(cache) == 2
    assert (await cache.get("c", lambda: value_of("x")))[1] is CacheOutcome.HIT
    assert (await cache.get("a", lambda: value_of("a")))[1] is CacheOutcome.MISS
