"""Prometheus answers are classified in one place: unavailable versus query errors versus results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tgi_autoscaler.adapter.errors import PrometheusQueryError, PrometheusUnavailable
from tgi_autoscaler.adapter.prometheus import PrometheusClient, _interpret
from tgi_autoscaler.config.metrics import PrometheusConnection

pytestmark = pytest.mark.unit


def _error(error_type: str, message: str) -> dict[str, str]:
    return {"status": "error", "errorType": error_type, "error": message}


def _success(result_type: str, result: object) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": result_type, "result": result}}


def _body(document: object) -> bytes:
    return json.dumps(document).encode()


def test_vector_result_keeps_the_exact_value_text_and_time() -> None:
    body = _body(
        {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1700000000.123, "0.1"]}]},
            "warnings": ["partial"],
        }
    )
    result = _interpret(200, body, 1700000000.123)
    assert result.result_type == "vector"
    assert result.samples[0].value == "0.1"
    assert result.samples[0].timestamp == 1700000000.123
    assert result.warnings == ("partial",)


def test_scalar_result_is_one_sample() -> None:
    body = _body({"status": "success", "data": {"resultType": "scalar", "result": [5.5, "NaN"]}})
    assert _interpret(200, body, 5.5).samples[0].value == "NaN"


@pytest.mark.parametrize(
    ("code", "document", "error", "reason"),
    [
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error"},
            PrometheusQueryError,
            "bad_data",
        ),
        (
            422,
            {"status": "error", "errorType": "execution", "error": "many-to-many"},
            PrometheusQueryError,
            "execution",
        ),
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            PrometheusUnavailable,
            "timeout",
        ),
        (
            500,
            {"status": "error", "errorType": "internal", "error": "boom"},
            PrometheusUnavailable,
            "internal",
        ),
        (
            401,
            {"status": "error", "errorType": "unauthorized", "error": "no"},
            PrometheusUnavailable,
            "http_401",
        ),
        (502, "<html>bad gateway</html>", PrometheusUnavailable, "http_502"),
        (403, "forbidden", PrometheusUnavailable, "http_403"),
        (200, "not json", PrometheusQueryError, "malformed"),
        (
            200,
            {"status": "success", "data": {"resultType": "vector", "result": [{"value": []}]}},
            PrometheusQueryError,
            "malformed",
        ),
        (
            200,
            {"status": "success", "data": {"resultType": "hologram", "result": []}},
            PrometheusQueryError,
            "malformed",
        ),
    ],
)
def test_failures_map_to_the_error_tree(
    code: int, document: object, error: type[Exception], reason: str
) -> None:
    body = document.encode() if isinstance(document, str) else _body(document)
    with pytest.raises(error) as caught:
        _interpret(code, body, 0.0)
    assert caught.value.reason == reason  # type: ignore[attr-defined]


async def test_credentials_come_from_the_configured_source(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rotated-token\n")
    password_file = tmp_path / "password"
    password_file.write_text("pw")
    cases = [
        (PrometheusConnection(url="http://p", bearer_token="inline"), "Bearer inline"),
        (PrometheusConnection(url="http://p", bearer_token_file=str(token_file)), "Bearer rotated-token"),
        (
            PrometheusConnection(
                url="http://p", basic_auth={"username": "u", "password_file": str(password_file)}
            ),
            "Basic dTpwdw==",
        ),
    ]
    for connection, expected in cases:
        client = PrometheusClient(connection)
        assert await client._auth_headers() == {"Authorization": expected}
    assert await PrometheusClient(PrometheusConnection(url="http://p"))._auth_headers() == {}


async def test_an_unreadable_token_file_is_unavailable_not_anonymous(tmp_path: Path) -> None:
    client = PrometheusClient(
        PrometheusConnection(url="http://p", bearer_token_file=str(tmp_path / "missing"))
    )
    with pytest.raises(PrometheusUnavailable, match="credentials"):
        await client._auth_headers()
