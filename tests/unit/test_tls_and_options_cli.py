"""``tgi-autoscaler adapter`` flags: TLS, authentication and Prometheus options, and their conflicts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tgi_autoscaler.adapter.cli import OptionsError, options_from_args, register

pytestmark = pytest.mark.unit


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["adapter", *argv])


def test_defaults_serve_on_6443_with_delegated_auth_and_built_in_metrics() -> None:
    options = options_from_args(_parse("--prometheus-url", "http://prometheus:9090/"))
    assert (options.bind_address, options.port) == ("0.0.0.0", 6443)  # noqa: S104
    assert not options.insecure_skip_auth
    assert options.authentication_configmap == ("kube-system", "extension-apiserver-authentication")
    assert options.always_allow_groups == ("system:masters",)
    assert (options.token_cache_ttl_s, options.allow_cache_ttl_s, options.deny_cache_ttl_s) == (10, 10, 10)
    assert options.settings.prometheus.url == "http://prometheus:9090"
    assert options.metrics_configmap is None
    assert options.metrics_file is None


def test_generated_certificate_names_include_the_service_in_the_pod_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "tgi-autoscaler")
    options = options_from_args(_parse("--prometheus-url", "http://p:9090"))
    assert options.tls_sans == (
        "tgi-autoscaler-adapter.tgi-autoscaler.svc",
        "tgi-autoscaler-adapter.tgi-autoscaler.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    )


def test_a_certificate_without_its_key_is_rejected() -> None:
    with pytest.raises(OptionsError, match="--tls-cert-file and --tls-private-key-file"):
        options_from_args(_parse("--prometheus-url", "http://p:9090", "--tls-cert-file", "/x/tls.crt"))


def test_skipping_auth_is_refused_on_a_non_loopback_address() -> None:
    with pytest.raises(OptionsError, match="loopback --bind-address"):
        options_from_args(_parse("--prometheus-url", "http://p:9090", "--insecure-skip-auth"))


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "localhost"])
def test_skipping_auth_is_allowed_on_loopback(address: str) -> None:
    options = options_from_args(
        _parse("--prometheus-url", "http://p:9090", "--insecure-skip-auth", "--bind-address", address)
    )
    assert options.insecure_skip_auth


def test_prometheus_is_required() -> None:
    with pytest.raises(OptionsError, match="--prometheus-url"):
        options_from_args(_parse())


def test_an_invalid_prometheus_url_is_reported() -> None:
    with pytest.raises(OptionsError, match="not an http"):
        options_from_args(_parse("--prometheus-url", "prometheus:9090"))


def test_prometheus_headers_and_cache_ttl_reach_the_settings() -> None:
    options = options_from_args(
        _parse(
            "--prometheus-url",
            "http://p:9090",
            "--prometheus-header",
            "X-Scope-OrgID=team",
            "--cache-ttl",
            "0",
        )
    )
    assert options.settings.prometheus.headers == {"X-Scope-OrgID": "team"}
    assert options.settings.cache.ttl_seconds == 0


def test_a_malformed_prometheus_header_names_the_flag() -> None:
    with pytest.raises(OptionsError, match="--prometheus-header 'X-Scope-OrgID'"):
        options_from_args(_parse("--prometheus-url", "http://p:9090", "--prometheus-header", "X-Scope-OrgID"))


def test_settings_file_and_prometheus_flags_are_exclusive(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("prometheus:\n  url: http://p:9090\n")
    with pytest.raises(OptionsError, match="exclusive"):
        options_from_args(_parse("--settings-file", str(settings), "--prometheus-url", "http://q:9090"))
    options = options_from_args(_parse("--settings-file", str(settings)))
    assert options.settings.prometheus.url == "http://p:9090"


def test_the_metrics_configmap_is_namespace_slash_name() -> None:
    options = options_from_args(
        _parse("--prometheus-url", "http://p:9090", "--metrics-configmap", "tgi-autoscaler/adapter-metrics")
    )
    assert options.metrics_configmap == ("tgi-autoscaler", "adapter-metrics")
    with pytest.raises(SystemExit):
        _parse("--prometheus-url", "http://p:9090", "--metrics-configmap", "adapter-metrics")


def test_always_allowed_groups_can_be_emptied() -> None:
    options = options_from_args(
        _parse("--prometheus-url", "http://p:9090", "--authorization-always-allow-groups", "")
    )
    assert options.always_allow_groups == ()
