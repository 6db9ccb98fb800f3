"""Kubernetes-shaped responses: ``metav1.Status`` errors and JSON encoded as the API server does.

Clients (the HPA's REST client, kubectl) decode failures as ``metav1.Status``; the wording and the
fields follow ``k8s.io/apimachinery/pkg/api/errors`` (``NewNotFound``, ``NewBadRequest``,
``NewForbidden``, ...). JSON is written as Go's ``encoding/json`` Encoder writes it: compact, ``<``,
``>``, ``&``, U+2028 and U+2029 escaped, followed by a newline.

The 401/403 helpers are for the authentication and authorization middleware: ``unauthorized()`` is
kube-apiserver's body for a failed authentication, and ``forbidden()`` takes the message built like
``responsewriters.forbiddenMessage`` (for a metric read: ``<metric>.external.metrics.k8s.io is
forbidden: User "u" cannot list resource "<metric>" in API group "external.metrics.k8s.io" in the
namespace "ns"`` -- the verb is ``list`` and the name empty, as kube-apiserver derives them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from tgi_autoscaler.adapter.errors import (
    AdapterError,
    EmptyResult,
    InvalidRequest,
    MetricUnavailable,
    NotAcceptable,
    UnknownMetric,
)

__all__ = [
    "GROUP",
    "JSON",
    "bad_request",
    "encode_json",
    "encoded_json_response",
    "forbidden",
    "from_error",
    "http_error",
    "internal_error",
    "json_response",
    "method_not_allowed",
    "not_acceptable",
    "not_found",
    "path_not_found",
    "service_unavailable",
    "status_body",
    "unauthorized",
]

GROUP: Final = "external.metrics.k8s.io"
JSON: Final = "application/json"
# The resource name the adapter reports for a missing metric: the lowercased list kind, so kubectl
# prints `externalmetricvaluelist.external.metrics.k8s.io "<metric>" not found`.
_METRIC_RESOURCE: Final = "externalmetricvaluelist"
_GO_HTML_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def encode_json(obj: Any) -> bytes:
    """``obj`` as Go's json.Encoder writes it (compact, HTML-safe escapes, trailing newline)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    if any(char in text for char in _GO_HTML_ESCAPES):
        text = "".join(_GO_HTML_ESCAPES.get(char, char) for char in text)
    return (text + "\n").encode("utf-8")


def json_response(
    obj: Any,
    *,
    status: int = 200,
    content_type: str = JSON,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON response with the headers the API server sends with every serialized object."""
    response = web.Response(body=encode_json(obj), status=status, headers=headers)
    # Set after construction so parameters such as ";g=apidiscovery.k8s.io" survive verbatim.
    response.headers["Content-Type"] = content_type
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def encoded_json_response(body: bytes, *, status: int = 200) -> web.Response:
    """A response for JSON already encoded with ``encode_json``."""
    response = web.Response(body=body, status=status)
    response.headers["Content-Type"] = JSON
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def status_body(
    code: int,
    message: str,
    *,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``metav1.Status`` failure; ``details`` keys in Go field order (name, group, kind, ...)."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "Unknown"),
    }
    if details is not None:
        body["details"] = {
            key: details[key]
            for key in ("name", "group", "kind", "uid", "causes", "retryAfterSeconds")
            if details.get(key)
        }
    body["code"] = code
    return body


def _respond(code: int, message: str, *, details: Mapping[str, Any] | None = None) -> web.Response:
    return json_response(status_body(code, message, details=details), status=code)


def bad_request(message: str) -> web.Response:
    """400, as ``errors.NewBadRequest`` (no details)."""
    return _respond(400, message)


def unauthorized(message: str = "Unauthorized") -> web.Response:
    """401 with kube-apiserver's body for a request it could not authenticate."""
    return _respond(401, message)


def forbidden(message: str, *, group: str = "", kind: str = "", name: str = "") -> web.Response:
    """403, as ``errors.NewForbidden``: ``kind`` is the resource (for us, the metric name)."""
    return _respond(403, message, details={"name": name, "group": group, "kind": kind})


def not_found(metric: str) -> web.Response:
    """404 for an unknown metric, as ``errors.NewNotFound`` of ``externalmetricvaluelist``."""
    return _respond(
        404,
        f'{_METRIC_RESOURCE}.{GROUP} "{metric}" not found',
        details={"name": metric, "group": GROUP, "kind": _METRIC_RESOURCE},
    )


def path_not_found() -> web.Response:
    """404 for a path nothing is served at, with the generic API server's wording."""
    return _respond(404, "the server could not find the requested resource", details={})


def method_not_allowed() -> web.Response:
    """405 for a method a served path does not support."""
    return _respond(405, "the server does not allow this method on the requested resource", details={})


def not_acceptable(accepted: str) -> web.Response:
    """406 naming the media types this endpoint can produce."""
    return _respond(406, f"only the following media types are accepted: {accepted}")


def http_error(code: int, message: str) -> web.Response:
    """Any other HTTP failure (e.g. a request aiohttp could not parse) as a Status."""
    return _respond(code, message)


def service_unavailable(message: str) -> web.Response:
    """503, as ``errors.NewServiceUnavailable``: no client retries it on its own (no Retry-After)."""
    return _respond(503, message)


def internal_error(message: str) -> web.Response:
    """500, as ``errors.NewInternalError``: the cause is repeated in ``details.causes``."""
    return _respond(500, f"Internal error occurred: {message}", details={"causes": [{"message": message}]})


def from_error(error: AdapterError) -> web.Response:
    """The response for an error of the adapter's tree (see ``tgi_autoscaler.adapter.errors``)."""
    if isinstance(error, InvalidRequest):
        return bad_request(error.message)
    if isinstance(error, NotAcceptable):
        return not_acceptable(error.message)
    if isinstance(error, UnknownMetric):
        return not_found(error.metric)
    if isinstance(error, EmptyResult):
        return _respond(
            404,
            error.message,
            details={"name": error.metric, "group": GROUP, "kind": _METRIC_RESOURCE},
        )
    if isinstance(error, MetricUnavailable):
        return service_unavailable(error.message)
    return internal_error(error.message)
