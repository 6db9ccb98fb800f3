"""Status bodies and JSON bytes are what kube-apiserver sends, so clients decode them unchanged."""

from __future__ import annotations

import json

import pytest

from tgi_autoscaler.adapter import status
from tgi_autoscaler.adapter.errors import (
    EmptyResult,
    InvalidSelector,
    NonFiniteValue,
    NotAcceptable,
    PrometheusQueryError,
    PrometheusUnavailable,
    UnexpectedResult,
    UnknownMetric,
)

pytestmark = pytest.mark.unit


def test_unauthorized_is_kube_apiservers_body() -> None:
    response = status.unauthorized()
    assert response.status == 401
    assert response.body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n'
    )
    assert response.headers["Content-Type"] == "application/json"


def test_forbidden_names_the_metric_as_the_resource() -> None:
    message = (
        'tgi_queue_size.external.metrics.k8s.io is forbidden: User "system:serviceaccount:a:b" cannot '
        'list resource "tgi_queue_size" in API group "external.metrics.k8s.io" in the namespace "ns"'
    )
    response = status.forbidden(message, group="external.metrics.k8s.io", kind="tgi_queue_size")
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert response.status == 403
    assert body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": {"group": "external.metrics.k8s.io", "kind": "tgi_queue_size"},
        "code": 403,
    }


def test_unknown_metric_reads_like_new_not_found() -> None:
    response = status.from_error(UnknownMetric("x"))
    assert response.status == 404
    assert response.body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"externalmetricvaluelist.external.metrics.k8s.io \\"x\\" not found",'
        b'"reason":"NotFound","details":{"name":"x","group":"external.metrics.k8s.io",'
        b'"kind":"externalmetricvaluelist"},"code":404}\n'
    )


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (InvalidSelector("unable to parse requirement: x", part="x"), 400, "BadRequest"),
        (NotAcceptable("application/json"), 406, "NotAcceptable"),
        (EmptyResult("m", "ns", "a=b"), 404, "NotFound"),
        (PrometheusUnavailable("cannot connect", reason="connect"), 503, "ServiceUnavailable"),
        (PrometheusQueryError("bad", reason="bad_data"), 503, "ServiceUnavailable"),
        (NonFiniteValue("NaN"), 503, "ServiceUnavailable"),
        (UnexpectedResult("2 series"), 500, "InternalError"),
    ],
)
def test_each_error_of_the_tree_has_its_code(error: Exception, code: int, reason: str) -> None:
    response = status.from_error(error)  # type: ignore[arg-type]
    body = json.loads(response.body)  # type: ignore[arg-type]
    assert (response.status, body["code"], body["reason"], body["status"]) == (code, code, reason, "Failure")
    assert "Retry-After" not in response.headers  # clients would otherwise retry inside the HPA sync


def test_internal_error_repeats_the_cause_like_new_internal_error() -> None:
    body = json.loads(status.internal_error("boom").body)  # type: ignore[arg-type]
    assert body["message"] == "Internal error occurred: boom"
    assert body["details"] == {"causes": [{"message": "boom"}]}


def test_json_is_encoded_like_gos_encoder() -> None:
    assert status.encode_json({"a": "<b>&\u2028é", "n": [1, True, None]}) == (
        '{"a":"\\u003cb\\u003e\\u0026\\u2028é","n":[1,true,null]}\n'.encode()
    )
