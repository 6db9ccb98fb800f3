"""The front-proxy settings from ``extension-apiserver-authentication``: parsing and list-then-watch."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.kube_fakes import CONFIGMAP_REF, ScriptedClient, configmap_event, configmap_list
from tests.unit.x509_factory import make_ca
from tgi_autoscaler.adapter.requestheader import (
    RequestHeaderConfig,
    RequestHeaderConfigError,
    RequestHeaderWatcher,
    parse_request_header_config,
)
from tgi_autoscaler.kube.errors import ApiError
from tgi_autoscaler.kube.retry import Backoff
from tgi_autoscaler.kube.watch import WatchPolicy

pytestmark = pytest.mark.unit

CA1 = make_ca("front-proxy-ca-1").cert_pem.decode()
CA2 = make_ca("front-proxy-ca-2").cert_pem.decode()


def _data(ca: str = CA1, allowed: str = '["front-proxy-client"]') -> dict[str, str]:
    # The shape kube-apiserver writes: PEM for CAs, JSON lists for everything else.
    return {
        "client-ca-file": CA2,
        "requestheader-client-ca-file": ca,
        "requestheader-allowed-names": allowed,
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def test_the_configmap_written_by_kube_apiserver_is_understood() -> None:
    config = parse_request_header_config(_data())
    assert config.client_ca_pem == CA1.encode()
    assert [ca.subject.rfc4514_string() for ca in config.client_cas] == ["CN=front-proxy-ca-1"]
    assert config.allowed_names == ("front-proxy-client",)
    assert config.username_headers == ("X-Remote-User",)
    assert config.uid_headers == ()
    assert config.group_headers == ("X-Remote-Group",)
    assert config.extra_header_prefixes == ("X-Remote-Extra-",)
    assert config.enabled


def test_without_a_front_proxy_ca_header_identities_are_disabled() -> None:
    data = _data()
    del data["requestheader-client-ca-file"]
    config = parse_request_header_config(data)
    assert config.client_ca_pem is None
    assert not config.enabled


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("requestheader-allowed-names", "front-proxy-client", "requestheader-allowed-names: not a JSON list"),
        ("requestheader-allowed-names", '{"a": 1}', "requestheader-allowed-names: not a JSON list"),
        ("requestheader-username-headers", '[" "]', "requestheader-username-headers: header names must not"),
        (
            "requestheader-client-ca-file",
            "-----BEGIN CERTIFICATE-----\nxx",
            "requestheader-client-ca-file: not a PEM",
        ),
    ],
)
def test_unusable_values_are_reported_by_key(key: str, value: str, message: str) -> None:
    data = _data()
    data[key] = value
    with pytest.raises(RequestHeaderConfigError, match=message):
        parse_request_header_config(data)


FAST = WatchPolicy(backoff=Backoff(initial_s=0.001, max_s=0.002), retry_failed_handlers=True)
GONE = ApiError(410, "Expired", "too old resource version")


async def _run_until_idle(watcher: RequestHeaderWatcher, source: ScriptedClient) -> None:
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.wait_for(source.idle.wait(), timeout=5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_rotated_ca_in_a_watch_event_reaches_listeners() -> None:
    source = ScriptedClient(
        lists=[configmap_list(_data(CA1), "10")], watches=[[configmap_event("MODIFIED", _data(CA2), "11")]]
    )
    seen: list[RequestHeaderConfig] = []

    async def listener(config: RequestHeaderConfig) -> None:
        seen.append(config)

    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    watcher.add_listener(listener)
    await _run_until_idle(watcher, source)

    assert [c.client_ca_pem for c in seen] == [CA1.encode(), CA2.encode()]
    assert watcher.current is not None
    assert watcher.current.client_ca_pem == CA2.encode()
    assert source.watch_versions == ["10", "11"]  # the second watch resumes after the event


async def test_an_expired_watch_lists_again() -> None:
    source = ScriptedClient(
        lists=[configmap_list(_data(CA1), "10"), configmap_list(_data(CA2), "50")], watches=[[GONE]]
    )
    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    await _run_until_idle(watcher, source)

    assert source.list_calls == 2
    assert source.watch_versions == ["10", "50"]
    assert watcher.current is not None
    assert watcher.current.client_ca_pem == CA2.encode()


async def test_errors_back_off_and_retry_keeping_the_last_good_settings() -> None:
    source = ScriptedClient(
        lists=[
            configmap_list(_data(CA1), "10"),
            ConnectionError("refused"),
            configmap_list(_data(CA1), "12"),
        ],
        watches=[[ConnectionResetError("reset")]],
    )
    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    await _run_until_idle(watcher, source)

    assert source.list_calls == 3
    assert watcher.current is not None
    assert watcher.current.client_ca_pem == CA1.encode()


async def test_an_invalid_update_or_a_deletion_keeps_the_last_good_settings() -> None:
    broken = _data(CA2, allowed="not json")
    source = ScriptedClient(
        lists=[configmap_list(_data(CA1), "10")],
        watches=[
            [configmap_event("MODIFIED", broken, "11"), configmap_event("DELETED", None, "12")],
        ],
    )
    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    await _run_until_idle(watcher, source)

    assert watcher.synced
    assert watcher.current is not None
    assert watcher.current.client_ca_pem == CA1.encode()


async def test_a_missing_configmap_leaves_the_watcher_unsynced_until_it_appears() -> None:
    source = ScriptedClient(
        lists=[configmap_list(None, "10")], watches=[[configmap_event("ADDED", _data(CA1), "11")]]
    )
    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    # (synced, current) as each listener call sees them: before the settings become current.
    states: list[tuple[bool, RequestHeaderConfig | None]] = []

    async def listener(_config: RequestHeaderConfig) -> None:
        states.append((watcher.synced, watcher.current))

    watcher.add_listener(listener)
    await _run_until_idle(watcher, source)
    assert states == [(False, None)]
    assert watcher.synced
    assert watcher.current is not None


async def test_a_listener_failure_is_retried_until_the_settings_are_applied() -> None:
    source = ScriptedClient(
        lists=[configmap_list(_data(CA1), "10"), configmap_list(_data(CA1), "11")], watches=[]
    )
    failures = [RuntimeError("TLS context rebuild failed")]
    applied: list[bytes | None] = []

    async def flaky(config: RequestHeaderConfig) -> None:
        if failures:
            raise failures.pop()
        applied.append(config.client_ca_pem)

    watcher = RequestHeaderWatcher(source, CONFIGMAP_REF, policy=FAST)
    watcher.add_listener(flaky)
    await _run_until_idle(watcher, source)

    assert applied == [CA1.encode()]
    assert source.list_calls == 2
    assert watcher.current is not None
    assert watcher.synced
