"""Which failures are worth retrying, and how long to wait: the retry policy as data.

:class:`Backoff` is the one exponential backoff with jitter, used by the watch loop and the
controller's work queue alike. :class:`RetryPolicy` classifies failures: a request that fails
because the API server is busy (429), restarting (5xx, connection refused) or raced by another
writer (409) will very likely succeed later, so it is retried with exponential backoff and jitter
(so 200 services failing together do not retry in lockstep). A 4xx validation error will fail the
same way every time: retrying only hammers the API server, so the controller reports it (a Warning
event) and leaves it until the input changes or the periodic resync comes round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tgi_autoscaler.kube.errors import ApiError, TransportError

__all__ = ["Backoff", "RetryDecision", "RetryPolicy"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``initial_s * multiplier**(attempt-1)``, capped, with +/- ``jitter``."""

    initial_s: float = 0.2
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.2  # fraction of the delay, applied symmetrically

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Delay before retry number ``attempt`` (1-based); ``rand()`` returns a float in [0, 1)."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        # Multiply step by step and stop at the cap, so a long outage cannot overflow the float.
        base = self.initial_s
        for _ in range(attempt - 1):
            base *= self.multiplier
            if base >= self.max_s:
                base = self.max_s
                break
        spread = base * self.jitter
        return min(self.max_s, max(0.0, base - spread + 2 * spread * rand()))


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay_s: float  # 0 when not retrying
    reason: str  # short, for logs and metrics: "conflict", "throttled", "server-error", ...


def _default_transient() -> frozenset[int]:
    return frozenset({409, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    backoff: Backoff = field(default_factory=Backoff)
    transient_statuses: frozenset[int] = field(default_factory=_default_transient)
    retry_all_5xx: bool = True
    max_attempts: int | None = None  # None: keep retrying transient errors (with the capped backoff)

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, TransportError | TimeoutError):
            return True
        if isinstance(exc, ApiError):
            return exc.status in self.transient_statuses or (self.retry_all_5xx and exc.status >= 500)
        return False

    def decide(self, exc: BaseException, attempt: int, rand: Callable[[], float]) -> RetryDecision:
        """What to do after the ``attempt``-th consecutive failure of one key."""
        reason = _reason(exc)
        if not self.is_transient(exc):
            return RetryDecision(retry=False, delay_s=0.0, reason=reason)
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return RetryDecision(retry=False, delay_s=0.0, reason=f"{reason}-exhausted")
        delay = self.backoff.delay(attempt, rand)
        if isinstance(exc, ApiError) and exc.retry_after_s is not None:
            # The server said when to come back; coming back earlier would only be throttled again.
            delay = max(delay, exc.retry_after_s)
        return RetryDecision(retry=True, delay_s=delay, reason=reason)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TransportError | TimeoutError):
        return "connection"
    if isinstance(exc, ApiError):
        if exc.status == 409:
            return "conflict"
        if exc.status == 429:
            return "throttled"
        if exc.status >= 500:
            return "server-error"
        if exc.status in (400, 422):
            return "invalid"
        if exc.status in (401, 403):
            return "forbidden"
        if exc.status == 404:
            return "not-found"
        return f"http-{exc.status}"
    return "error"
