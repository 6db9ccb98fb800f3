"""A fleet stays whole when the task resizing it is cancelled half-way (as a follower being torn down)."""

from __future__ import annotations

import asyncio

import pytest

from tgi_autoscaler_dev.sim.fleet import Fleet

pytestmark = pytest.mark.integration


async def test_a_resize_cancelled_half_way_leaves_no_replica_running_after_stop() -> None:
    fleet = Fleet("cancel-check", replicas=1)
    await fleet.start()
    try:
        resize = asyncio.create_task(fleet.scale_to(4), name="resize")
        # Cancel exactly while the new replicas are starting: their engines run, the fleet does not
        # list them yet.
        for _ in range(10_000):
            await asyncio.sleep(0)
            if _engines() > 1:
                break
        assert _engines() > 1, "the resize never started a new replica"
        assert not resize.done()
        resize.cancel()
        with pytest.raises(asyncio.CancelledError):
            await resize
    finally:
        await fleet.stop()
    # The shielded resize completed under the fleet's lock before stop() ran, so stop() saw and
    # stopped every replica it started: no replica engine outlives the fleet.
    assert _engines() == 0
    assert fleet.size == 0


def _engines() -> int:
    return sum(1 for t in asyncio.all_tasks() if t.get_name() == "sim-replica-engine" and not t.done())


@pytest.mark.parametrize("attempt", range(5))
async def test_stopping_right_after_a_scale_down_stops_the_draining_replicas_too(attempt: int) -> None:
    fleet = Fleet("drain-check", replicas=3)
    await fleet.start()
    try:
        await fleet.scale_to(1)  # two replicas start draining (idle: they go straight to stopping)
        for _ in range(attempt):
            await asyncio.sleep(0)
    finally:
        await fleet.stop()
    assert _engines() == 0
