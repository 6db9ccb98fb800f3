"""Requests waiting for a Ready replica: how many, for how long, and when to give up.

One ``Gate`` per activator process. The proxy asks ``hold`` before forwarding: it returns at once
while the upstream is ready, otherwise it waits until the readiness probe opens the gate, the
request's deadline passes, or refuses at once when ``max_held`` requests already wait. Held
requests are released together when the gate opens; a request whose forwarding then fails to
connect (the last replica went away) closes the gate and waits again within its own deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Gate", "HoldOutcome", "HoldPolicy"]


class HoldOutcome(StrEnum):
    READY = "ready"  # forward now
    FULL = "full"  # max_held requests already wait: 503 at once
    TIMEOUT = "timeout"  # waited max_wait_s: 503


@dataclass(frozen=True, slots=True)
class HoldPolicy:
    """The activator's bounds, in requests and seconds."""

    max_held: int = 256
    max_wait_s: float = 300.0
    idle_after_s: float = 900.0
    retry_after_s: int = 10

    def __post_init__(self) -> None:
        if self.max_held < 1:
            raise ValueError(f"max held requests: must be >= 1 (got {self.max_held})")
        if not self.max_wait_s > 0:
            raise ValueError(f"max wait: must be > 0 s (got {self.max_wait_s})")
        if not self.idle_after_s > 0:
            raise ValueError(f"idle window: must be > 0 s (got {self.idle_after_s})")
        if self.retry_after_s < 1:
            raise ValueError(f"Retry-After: must be >= 1 s (got {self.retry_after_s})")


class Gate:
    """Upstream readiness and the requests held until it is ready."""

    def __init__(self, policy: HoldPolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._open = asyncio.Event()
        self.held = 0
        self._last_arrival: float | None = None

    @property
    def ready(self) -> bool:
        return self._open.is_set()

    def set_ready(self, ready: bool) -> None:
        if ready:
            self._open.set()
        else:
            self._open.clear()

    def arrived(self) -> None:
        """Record a request's arrival (it restarts the idle window)."""
        self._last_arrival = self._clock()

    @property
    def active(self) -> bool:
        """A request arrived within the idle window: the service should keep (or get) a replica."""
        last = self._last_arrival
        return last is not None and self._clock() - last < self.policy.idle_after_s

    def deadline(self) -> float:
        """The latest time a request arriving now may be released."""
        return self._clock() + self.policy.max_wait_s

    async def hold(self, deadline: float) -> HoldOutcome:
        """Wait until the upstream is ready, or say why the request must be refused."""
        if self._open.is_set():
            return HoldOutcome.READY
        if self.held >= self.policy.max_held:
            return HoldOutcome.FULL
        remaining = deadline - self._clock()
        if remaining <= 0:
            return HoldOutcome.TIMEOUT
        self.held += 1
        try:
            await asyncio.wait_for(self._open.wait(), timeout=remaining)
        except TimeoutError:
            return HoldOutcome.TIMEOUT
        finally:
            self.held -= 1
        return HoldOutcome.READY
