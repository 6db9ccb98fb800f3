"""Retry policy: transient errors back off exponentially with jitter; validation errors are final."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgi_autoscaler.kube.errors import ApiError, TransportError, api_error_from_status, describe
from tgi_autoscaler.kube.retry import Backoff, RetryPolicy

pytestmark = pytest.mark.unit


def _api(status: int, retry_after: float | None = None) -> ApiError:
    return ApiError(status=status, reason="R", message="m", retry_after_s=retry_after)


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504, 599])
def test_conflicts_throttling_and_server_errors_are_retried(status: int) -> None:
    decision = RetryPolicy().decide(_api(status), 1, lambda: 0.5)
    assert decision.retry
    assert decision.delay_s > 0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_client_errors_are_permanent(status: int) -> None:
    decision = RetryPolicy().decide(_api(status), 1, lambda: 0.5)
    assert not decision.retry


def test_connection_errors_and_timeouts_are_retried() -> None:
    policy = RetryPolicy()
    assert policy.decide(TransportError("refused"), 1, lambda: 0.5).reason == "connection"
    assert policy.decide(TimeoutError(), 1, lambda: 0.5).retry


def test_programming_errors_are_not_retried_in_a_hot_loop() -> None:
    assert not RetryPolicy().decide(KeyError("x"), 1, lambda: 0.5).retry


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    decision = RetryPolicy().decide(_api(429, retry_after=7.0), 1, lambda: 0.5)
    assert decision.retry
    assert decision.delay_s == 7.0
    assert decision.reason == "throttled"


def test_backoff_doubles_then_caps() -> None:
    backoff = Backoff(initial_s=0.1, max_s=1.0, multiplier=2.0, jitter=0.0)
    delays = [backoff.delay(n, lambda: 0.5) for n in range(1, 8)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


@given(attempt=st.integers(min_value=1, max_value=10_000), r=st.floats(min_value=0, max_value=0.999999))
def test_jittered_delay_stays_within_its_band_and_the_cap(attempt: int, r: float) -> None:
    backoff = Backoff(initial_s=0.2, max_s=60.0, multiplier=2.0, jitter=0.2)
    base = min(60.0, 0.2 * 2.0 ** min(attempt - 1, 64))
    delay = backoff.delay(attempt, lambda: r)
    assert base * 0.8 - 1e-9 <= delay <= min(60.0, base * 1.2) + 1e-9


def test_jitter_spreads_simultaneous_retries() -> None:
    backoff = Backoff(initial_s=1.0, max_s=60.0, jitter=0.2)
    assert backoff.delay(3, lambda: 0.0) < backoff.delay(3, lambda: 0.99)


def test_max_attempts_gives_up() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.decide(_api(503), 2, lambda: 0.5).retry
    final = policy.decide(_api(503), 3, lambda: 0.5)
    assert not final.retry
    assert final.reason == "server-error-exhausted"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"initial_s": 0}, "initial_s"),
        ({"initial_s": 5, "max_s": 1}, "initial_s"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 1.0}, "jitter"),
    ],
)
def test_invalid_backoff_is_rejected_with_the_field_named(kwargs: dict[str, float], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Backoff(**kwargs)


def test_status_body_causes_and_retry_after_are_decoded() -> None:
    error = api_error_from_status(
        422,
        {
            "reason": "Invalid",
            "message": 'PodMonitor.monitoring.coreos.com "x" is invalid',
            "details": {"causes": [{"field": "spec.podMetricsEndpoints[0].port", "message": "bad"}]},
        },
        None,
    )
    assert error.causes[0].field == "spec.podMetricsEndpoints[0].port"
    throttled = api_error_from_status(429, {"details": {"retryAfterSeconds": 3}}, None)
    assert throttled.retry_after_s == 3.0
    header = api_error_from_status(429, {}, "5")
    assert header.retry_after_s == 5.0


def test_descriptions_keep_the_api_servers_status_and_reason() -> None:
    forbidden = api_error_from_status(
        403,
        {"reason": "Forbidden", "message": 'User "x" cannot create resource "subjectaccessreviews"'},
        None,
    )
    assert describe(forbidden) == '403 Forbidden: User "x" cannot create resource "subjectaccessreviews"'
    assert describe(TransportError("connection refused")) == "TransportError: connection refused"
    assert describe(TimeoutError()) == "TimeoutError"
