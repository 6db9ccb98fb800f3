"""Authentication: front-proxy certificates, forwarded identity headers and cached TokenReviews."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from multidict import CIMultiDict

from tests.unit.x509_factory import NOW, Issued, issue, make_ca
from tgi_autoscaler.adapter.authn import (
    Authenticator,
    ProxyCertificateError,
    ProxyCertificateVerifier,
    ReviewUnavailableError,
    UserInfo,
    bearer_token,
    identity_from_headers,
    verify_proxy_certificate,
    with_authenticated_group,
)
from tgi_autoscaler.adapter.requestheader import RequestHeaderConfig, parse_request_header_config

pytestmark = pytest.mark.unit

PROXY_CN = "front-proxy-client"


def _config(*cas: Issued, allowed: tuple[str, ...] = (PROXY_CN,)) -> RequestHeaderConfig:
    return parse_request_header_config(
        {
            "requestheader-client-ca-file": "".join(ca.cert_pem.decode() for ca in cas),
            "requestheader-allowed-names": json.dumps(list(allowed)),
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-uid-headers": '["X-Remote-Uid"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }
    )


def _headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


# --- the proxy's client certificate ---------------------------------------------------------------


def test_a_certificate_from_the_front_proxy_ca_with_an_allowed_name_is_accepted() -> None:
    ca = make_ca("front-proxy-ca")
    assert verify_proxy_certificate(issue(ca, PROXY_CN).der, _config(ca)) == PROXY_CN


def test_a_common_name_outside_the_allowed_list_is_rejected() -> None:
    ca = make_ca("front-proxy-ca")
    with pytest.raises(ProxyCertificateError, match="'mallory' is not in the allowed list"):
        verify_proxy_certificate(issue(ca, "mallory").der, _config(ca))


def test_an_empty_allowed_list_accepts_any_name_the_ca_signed() -> None:
    ca = make_ca("front-proxy-ca")
    assert verify_proxy_certificate(issue(ca, "anyone").der, _config(ca, allowed=())) == "anyone"


def test_a_certificate_from_another_ca_with_the_same_name_is_rejected() -> None:
    trusted, impostor = make_ca("front-proxy-ca"), make_ca("front-proxy-ca")
    with pytest.raises(ProxyCertificateError, match="not signed by the front-proxy CA"):
        verify_proxy_certificate(issue(impostor, PROXY_CN).der, _config(trusted))


def test_an_expired_certificate_is_rejected() -> None:
    ca = make_ca("front-proxy-ca")
    old = issue(ca, PROXY_CN, not_before=NOW - dt.timedelta(days=2), not_after=NOW - dt.timedelta(days=1))
    with pytest.raises(ProxyCertificateError, match="expired"):
        verify_proxy_certificate(old.der, _config(ca))


def test_a_serving_only_certificate_cannot_act_as_the_proxy() -> None:
    ca = make_ca("front-proxy-ca")
    server_only = issue(ca, PROXY_CN, usages=(ExtendedKeyUsageOID.SERVER_AUTH,))
    with pytest.raises(ProxyCertificateError, match="client authentication"):
        verify_proxy_certificate(server_only.der, _config(ca))


def test_after_a_ca_rotation_only_certificates_of_the_new_ca_are_accepted() -> None:
    old_ca, new_ca = make_ca("front-proxy-ca"), make_ca("front-proxy-ca")
    old_cert, new_cert = issue(old_ca, PROXY_CN), issue(new_ca, PROXY_CN)
    overlap = _config(old_ca, new_ca)
    assert verify_proxy_certificate(old_cert.der, overlap) == PROXY_CN
    assert verify_proxy_certificate(new_cert.der, overlap) == PROXY_CN
    rotated = _config(new_ca)
    assert verify_proxy_certificate(new_cert.der, rotated) == PROXY_CN
    with pytest.raises(ProxyCertificateError):
        verify_proxy_certificate(old_cert.der, rotated)


def test_a_remembered_proxy_certificate_is_forgotten_when_the_ca_rotates() -> None:
    old_ca, new_ca = make_ca("front-proxy-ca"), make_ca("front-proxy-ca")
    old_cert = issue(old_ca, PROXY_CN)
    verifier = ProxyCertificateVerifier()
    assert verifier.verify(old_cert.der, _config(old_ca), now=NOW) == PROXY_CN
    assert verifier.verify(old_cert.der, _config(old_ca), now=NOW) == PROXY_CN
    with pytest.raises(ProxyCertificateError, match="not signed by the front-proxy CA"):
        verifier.verify(old_cert.der, _config(new_ca), now=NOW)


def test_a_remembered_proxy_certificate_still_expires() -> None:
    ca = make_ca("front-proxy-ca")
    short = issue(ca, PROXY_CN, not_before=NOW - dt.timedelta(hours=1), not_after=NOW + dt.timedelta(hours=1))
    config = _config(ca)
    verifier = ProxyCertificateVerifier()
    assert verifier.verify(short.der, config, now=NOW) == PROXY_CN
    with pytest.raises(ProxyCertificateError, match="expired"):
        verifier.verify(short.der, config, now=NOW + dt.timedelta(hours=2))


def test_a_rejected_certificate_is_checked_again_every_time() -> None:
    ca = make_ca("front-proxy-ca")
    config = _config(ca)
    verifier = ProxyCertificateVerifier()
    for _ in range(2):
        with pytest.raises(ProxyCertificateError, match="'mallory' is not in the allowed list"):
            verifier.verify(issue(ca, "mallory").der, config, now=NOW)
    # The same exact certificate, rejected twice: nothing about a failure is remembered.
    mallory = issue(ca, "mallory")
    for _ in range(2):
        with pytest.raises(ProxyCertificateError):
            verifier.verify(mallory.der, config, now=NOW)


def test_a_leaf_certificate_cannot_sign_a_proxy_certificate() -> None:
    ca = make_ca("front-proxy-ca")
    leaf_as_ca = issue(ca, "not-a-ca")
    forged = issue(leaf_as_ca, PROXY_CN)
    with pytest.raises(ProxyCertificateError, match="not signed"):
        verify_proxy_certificate(forged.der, _config(leaf_as_ca))


# --- forwarded identity headers -------------------------------------------------------------------


def test_identity_headers_are_read_case_insensitively_with_every_group_and_extra() -> None:
    ca = make_ca("front-proxy-ca")
    user = identity_from_headers(
        _headers(
            ("x-remote-user", "alice"),
            ("X-Remote-Uid", "u-1"),
            ("X-Remote-Group", "devs"),
            ("x-remote-group", "system:authenticated"),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-scopes", "b"),
            ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-name", "p"),
        ),
        _config(ca),
    )
    assert user == UserInfo(
        name="alice",
        uid="u-1",
        groups=("devs", "system:authenticated"),
        extra=(("authentication.kubernetes.io/pod-name", ("p",)), ("scopes", ("a", "b"))),
    )


def test_no_user_header_means_no_forwarded_identity() -> None:
    ca = make_ca("front-proxy-ca")
    assert identity_from_headers(_headers(("X-Remote-Group", "devs")), _config(ca)) is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("", None),
    ],
)
def test_bearer_tokens_are_parsed_strictly(value: str, token: str | None) -> None:
    assert bearer_token(_headers(("Authorization", value))) == token


# --- the authenticator ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTokenReviewer:
    """Answers from a fixed table and counts how often kube-apiserver would have been asked."""

    def __init__(self, users: dict[str, UserInfo], *, fail: bool = False) -> None:
        self.users = users
        self.fail = fail
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def review(self, token: str) -> UserInfo | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise ReviewUnavailableError("TokenReview failed: ClientConnectorError")
        return self.users.get(token)


BOB = UserInfo(
    name="system:serviceaccount:kube-system:horizontal-pod-autoscaler", groups=("g", "system:authenticated")
)


def _authn(
    config: RequestHeaderConfig | None,
    reviewer: FakeTokenReviewer | None = None,
    clock: FakeClock | None = None,
) -> Authenticator:
    return Authenticator(lambda: config, reviewer, token_cache_ttl_s=10.0, clock=clock or FakeClock())


async def test_the_aggregator_identity_is_accepted_with_a_valid_proxy_certificate() -> None:
    ca = make_ca("front-proxy-ca")
    result = await _authn(_config(ca)).authenticate(
        peer_cert_der=issue(ca, PROXY_CN).der,
        headers=_headers(("X-Remote-User", "alice"), ("X-Remote-Group", "devs")),
    )
    assert result.user == UserInfo(name="alice", groups=("devs", "system:authenticated"))
    assert result.method == "requestheader"


async def test_forged_identity_headers_without_a_client_certificate_are_unauthenticated() -> None:
    ca = make_ca("front-proxy-ca")
    result = await _authn(_config(ca)).authenticate(
        peer_cert_der=None,
        headers=_headers(("X-Remote-User", "system:admin"), ("X-Remote-Group", "system:masters")),
    )
    assert result.user is None
    assert result.reason == "no client certificate or bearer token"


async def test_forged_identity_headers_with_a_disallowed_certificate_are_unauthenticated() -> None:
    ca = make_ca("front-proxy-ca")
    result = await _authn(_config(ca)).authenticate(
        peer_cert_der=issue(ca, "kubelet").der, headers=_headers(("X-Remote-User", "system:admin"))
    )
    assert result.user is None
    assert "'kubelet' is not in the allowed list" in result.reason


async def test_a_proxy_certificate_is_useless_before_the_front_proxy_settings_are_known() -> None:
    ca = make_ca("front-proxy-ca")
    result = await _authn(None).authenticate(
        peer_cert_der=issue(ca, PROXY_CN).der, headers=_headers(("X-Remote-User", "alice"))
    )
    assert result.user is None
    assert "not configured" in result.reason


async def test_identity_headers_are_ignored_when_a_token_authenticates_the_request() -> None:
    reviewer = FakeTokenReviewer({"good": BOB})
    result = await _authn(_config(make_ca("front-proxy-ca")), reviewer).authenticate(
        peer_cert_der=None,
        headers=_headers(("Authorization", "Bearer good"), ("X-Remote-User", "system:admin")),
    )
    assert result.user == BOB
    assert result.method == "token"


async def test_token_answers_are_cached_for_the_ttl_then_reviewed_again() -> None:
    clock, reviewer = FakeClock(), FakeTokenReviewer({"good": BOB})
    authn = _authn(None, reviewer, clock)
    headers = _headers(("Authorization", "Bearer good"))
    for _ in range(3):
        assert (await authn.authenticate(peer_cert_der=None, headers=headers)).user == BOB
    assert reviewer.calls == 1
    clock.now += 10.5
    assert (await authn.authenticate(peer_cert_der=None, headers=headers)).user == BOB
    assert reviewer.calls == 2


async def test_rejected_tokens_are_cached_too() -> None:
    reviewer = FakeTokenReviewer({})
    authn = _authn(None, reviewer)
    headers = _headers(("Authorization", "Bearer wrong"))
    for _ in range(3):
        result = await authn.authenticate(peer_cert_der=None, headers=headers)
        assert result.user is None
        assert result.reason == "token rejected by TokenReview"
    assert reviewer.calls == 1


async def test_an_unreachable_api_server_is_unauthenticated_and_not_cached() -> None:
    reviewer = FakeTokenReviewer({"good": BOB}, fail=True)
    authn = _authn(None, reviewer)
    headers = _headers(("Authorization", "Bearer good"))
    result = await authn.authenticate(peer_cert_der=None, headers=headers)
    assert result.user is None
    assert "TokenReview failed" in result.reason
    reviewer.fail = False
    assert (await authn.authenticate(peer_cert_der=None, headers=headers)).user == BOB
    assert reviewer.calls == 2


async def test_concurrent_requests_with_one_token_share_a_single_review() -> None:
    reviewer = FakeTokenReviewer({"good": BOB})
    reviewer.gate = asyncio.Event()
    authn = _authn(None, reviewer)
    headers = _headers(("Authorization", "Bearer good"))
    tasks = [asyncio.create_task(authn.authenticate(peer_cert_der=None, headers=headers)) for _ in range(5)]
    await asyncio.sleep(0)
    reviewer.gate.set()
    results = await asyncio.gather(*tasks)
    assert [r.user for r in results] == [BOB] * 5
    assert reviewer.calls == 1


async def test_without_a_token_reviewer_bearer_tokens_are_unauthenticated() -> None:
    result = await _authn(None, None).authenticate(
        peer_cert_der=None, headers=_headers(("Authorization", "Bearer x"))
    )
    assert result.user is None
    assert result.reason == "token authentication is disabled"


async def test_a_forwarded_identity_without_groups_is_still_authenticated() -> None:
    # kube-apiserver's OpenAPI downloader: user system:aggregator, no groups at all.
    ca = make_ca("front-proxy-ca")
    result = await _authn(_config(ca)).authenticate(
        peer_cert_der=issue(ca, PROXY_CN).der, headers=_headers(("X-Remote-User", "system:aggregator"))
    )
    assert result.user == UserInfo(name="system:aggregator", groups=("system:authenticated",))


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        (("system:authenticated", "devs"), ("system:authenticated", "devs")),
        (("system:unauthenticated",), ("system:unauthenticated",)),
        (("devs",), ("devs", "system:authenticated")),
    ],
)
def test_the_authenticated_group_is_added_once_and_never_to_the_unauthenticated(
    groups: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    assert with_authenticated_group(UserInfo(name="u", groups=groups)).groups == expected
    assert with_authenticated_group(UserInfo(name="system:anonymous")).groups == ()
