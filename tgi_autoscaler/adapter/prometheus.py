"""Async client for Prometheus' instant-query API, and the one place its failures are classified.

One ``aiohttp.ClientSession`` per adapter keeps connections to Prometheus alive between reads. Each
query is a form POST to ``<url>/api/v1/query`` with an explicit evaluation ``time`` (so an empty
result still has a timestamp) and a Prometheus-side ``timeout`` just under the client deadline (so
Prometheus abandons work nobody waits for). Credentials come from ``PrometheusConnection``: a bearer
token (inline or a file re-read as it rotates), basic auth, a CA bundle, and extra headers such as
``X-Scope-OrgID``. Neither credentials nor header values are ever logged.

Every failure leaves this module as a ``PrometheusUnavailable`` (could not get an answer) or a
``PrometheusQueryError`` (Prometheus answered "error"), with a ``reason`` for the error metric.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol
from urllib.parse import urlencode

import aiohttp
import structlog

from tgi_autoscaler.adapter.errors import PrometheusQueryError, PrometheusUnavailable
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.config.metrics import PrometheusConnection

__all__ = [
    "InstantResult",
    "PrometheusClient",
    "PrometheusQuerier",
    "Sample",
]

log = structlog.get_logger(__name__)

_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
_SECRET_FILE_REFRESH_S: Final = 60.0
# Seconds left between Prometheus' own deadline and ours, so its timeout error arrives first.
_SERVER_TIMEOUT_MARGIN_S: Final = 0.25

ResultType = Literal["vector", "scalar", "matrix", "string"]


@dataclass(frozen=True)
class Sample:
    """One sample: its labels, its timestamp (Unix seconds) and its value as Prometheus wrote it."""

    labels: Mapping[str, str]
    timestamp: float
    value: str


@dataclass(frozen=True)
class InstantResult:
    """An instant query's answer; ``evaluated_at`` is the evaluation time sent with the query."""

    result_type: ResultType
    samples: tuple[Sample, ...]
    evaluated_at: float
    warnings: tuple[str, ...] = field(default=())


class PrometheusQuerier(Protocol):
    """What the adapter needs from Prometheus; tests and benchmarks may wrap or replace it."""

    async def query(self, promql: str) -> InstantResult: ...


class _SecretFile:
    """A credential kept in a file (projected ServiceAccount token): re-read every minute."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)
        self._value = ""
        self._read_at = -math.inf

    async def get(self) -> str:
        now = time.monotonic()
        if now - self._read_at >= _SECRET_FILE_REFRESH_S:
            try:
                text = await asyncio.to_thread(self._path.read_text, encoding="utf-8")
            except OSError as exc:
                if not self._value:
                    raise PrometheusUnavailable(
                        "the adapter cannot read its Prometheus credentials", reason="credentials"
                    ) from exc
                log.warning("prometheus_credential_file_unreadable", path=str(self._path), error=str(exc))
            else:
                self._value = text.strip()
            self._read_at = now
        return self._value


def _ssl_context(connection: PrometheusConnection) -> ssl.SSLContext | bool:
    if not connection.url.startswith("https://"):
        return True
    if connection.insecure_skip_verify:
        return False
    context = ssl.create_default_context(cafile=connection.ca_file)
    return context


class PrometheusClient:
    """``PrometheusQuerier`` over HTTP; use ``async with`` or call ``start()``/``close()``."""

    def __init__(self, connection: PrometheusConnection, *, metrics: AdapterMetrics | None = None) -> None:
        self._connection = connection
        self._metrics = metrics
        self._endpoint = f"{connection.url}/api/v1/query"
        self._session: aiohttp.ClientSession | None = None
        self._token_file = _SecretFile(connection.bearer_token_file) if connection.bearer_token_file else None
        basic = connection.basic_auth
        self._password_file = _SecretFile(basic.password_file) if basic and basic.password_file else None
        self._server_timeout = max(connection.timeout_seconds - _SERVER_TIMEOUT_MARGIN_S, 0.1)

    async def start(self) -> None:
        if self._session is not None:
            return
        # Loading a CA bundle reads files: keep it off the event loop.
        ssl_setting = await asyncio.to_thread(_ssl_context, self._connection)
        connector = aiohttp.TCPConnector(ssl=ssl_setting, limit=64, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self._connection.timeout_seconds),
            headers=dict(self._connection.headers),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> PrometheusClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _auth_headers(self) -> dict[str, str]:
        connection = self._connection
        if connection.bearer_token is not None:
            return {"Authorization": f"Bearer {connection.bearer_token.get_secret_value()}"}
        if self._token_file is not None:
            return {"Authorization": f"Bearer {await self._token_file.get()}"}
        basic = connection.basic_auth
        if basic is not None:
            if basic.password is not None:
                password = basic.password.get_secret_value()
            else:
                assert self._password_file is not None
                password = await self._password_file.get()
            credentials = base64.b64encode(f"{basic.username}:{password}".encode()).decode("ascii")
            return {"Authorization": f"Basic {credentials}"}
        return {}

    async def query(self, promql: str) -> InstantResult:
        """Evaluate ``promql`` now; raises ``PrometheusUnavailable`` or ``PrometheusQueryError``."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        evaluated_at = round(time.time(), 3)
        # Prometheus durations take no fractions ("1.5s" is refused): milliseconds, then.
        timeout_ms = int(self._server_timeout * 1000)
        form = {"query": promql, "time": f"{evaluated_at:.3f}", "timeout": f"{timeout_ms}ms"}
        started = time.perf_counter()
        try:
            status, body = await self._post(form)
            result = _interpret(status, body, evaluated_at)
        except (PrometheusUnavailable, PrometheusQueryError) as exc:
            self._observe(started, "error", exc.reason)
            log.warning(
                "prometheus_query_failed",
                reason=exc.reason,
                error=exc.message,
                endpoint=self._endpoint,
                promql=promql,
            )
            raise
        self._observe(started, "success", None)
        if result.warnings:
            log.info("prometheus_query_warnings", promql=promql, warnings=list(result.warnings))
        return result

    async def _post(self, form: Mapping[str, str]) -> tuple[int, bytes]:
        """The HTTP exchange; transport failures become ``PrometheusUnavailable`` here."""
        assert self._session is not None
        headers = await self._auth_headers()
        timeout = self._connection.timeout_seconds
        try:
            # Encoded here: aiohttp's FormData machinery costs more CPU than the query itself.
            payload = urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with self._session.post(self._endpoint, data=payload, headers=headers) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > _MAX_BODY_BYTES:
                        raise PrometheusQueryError(
                            f"Prometheus returned more than {_MAX_BODY_BYTES} bytes for one instant query",
                            reason="oversized",
                        )
                    chunks.append(chunk)
                return response.status, b"".join(chunks)
        except TimeoutError:
            raise PrometheusUnavailable(
                f"Prometheus did not answer within {timeout:g}s", reason="timeout"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise PrometheusUnavailable(
                f"cannot connect to Prometheus ({exc.os_error.strerror or 'connection failed'})",
                reason="connect",
            ) from None
        except aiohttp.ClientError as exc:
            raise PrometheusUnavailable(
                f"the connection to Prometheus failed ({type(exc).__name__})", reason="connection"
            ) from None

    def _observe(self, started: float, outcome: str, reason: str | None) -> None:
        if self._metrics is None:
            return
        self._metrics.prometheus_query_duration.labels(outcome=outcome).observe(time.perf_counter() - started)
        if reason is not None:
            self._metrics.prometheus_query_errors.labels(reason=reason).inc()


def _interpret(status: int, body: bytes, evaluated_at: float) -> InstantResult:
    """Turn Prometheus' HTTP answer into a result or one of the two error types."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        if status >= 500 or status in (401, 403, 404, 429):
            raise PrometheusUnavailable(
                f"Prometheus answered HTTP {status} without an API response", reason=f"http_{status}"
            )
        raise PrometheusQueryError(
            f"Prometheus answered HTTP {status} with a body that is not the query API's JSON",
            reason="malformed",
        )
    if document.get("status") != "success":
        error_type = str(document.get("errorType") or f"http_{status}")
        error = str(document.get("error") or "no error message")
        if error_type in ("timeout", "canceled", "unavailable") or status >= 500 or status == 429:
            raise PrometheusUnavailable(f"Prometheus failed the query: {error}", reason=error_type)
        if status in (401, 403):
            raise PrometheusUnavailable(
                f"Prometheus refused the adapter's credentials (HTTP {status})", reason=f"http_{status}"
            )
        raise PrometheusQueryError(
            f"Prometheus rejected the query ({error_type}): {error}", reason=error_type
        )
    return _parse_data(document, evaluated_at)


def _labels(metric: Any) -> Mapping[str, str]:
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise TypeError("labels")
    return metric


def _parse_data(document: Mapping[str, Any], evaluated_at: float) -> InstantResult:
    try:
        data = document["data"]
        result_type = data["resultType"]
        raw = data["result"]
        if result_type == "vector":
            # The decoded label objects are used as they are (JSON object keys and these values are
            # strings): a grouped answer has thousands, and copies would double its memory.
            samples = tuple(
                Sample(
                    labels=_labels(item.get("metric", {})),
                    timestamp=float(item["value"][0]),
                    value=str(item["value"][1]),
                )
                for item in raw
            )
        elif result_type in ("scalar", "string"):
            samples = (Sample(labels={}, timestamp=float(raw[0]), value=str(raw[1])),)
        elif result_type == "matrix":
            samples = ()
        else:
            raise ValueError(result_type)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise PrometheusQueryError(
            "Prometheus returned a query result the adapter cannot read", reason="malformed"
        ) from None
    warnings = tuple(str(w) for w in document.get("warnings") or ())
    return InstantResult(
        result_type=result_type, samples=samples, evaluated_at=evaluated_at, warnings=warnings
    )
