"""``tgi-autoscaler adapter``: command-line flags for the external metrics adapter.

Flags follow the names Kubernetes' own aggregated API servers use where one exists
(``--secure-port``, ``--tls-cert-file``, ``--authentication-token-cache-ttl`` ...), so the
manifests read familiarly. Parsing turns them into an :class:`~.server.AdapterOptions`; every
inconsistency is reported with the flag's name before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path

from tgi_autoscaler import argtypes
from tgi_autoscaler.adapter.requestheader import AUTH_CONFIGMAP_NAME, AUTH_CONFIGMAP_NAMESPACE
from tgi_autoscaler.adapter.server import AdapterOptions, run_adapter
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.metrics import (
    AdapterSettings,
    CacheSettings,
    PrefetchSettings,
    PrometheusConnection,
    parse_adapter_settings_yaml,
)

__all__ = ["OptionsError", "options_from_args", "register"]


class OptionsError(ValueError):
    """Flags that cannot work together; the message names the flags."""


def _object_ref(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME (got {text!r})")
    return namespace, name


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "adapter",
        help="serve external.metrics.k8s.io from Prometheus (behind the kube-apiserver aggregation layer)",
        description="Serve the Kubernetes external metrics API (external.metrics.k8s.io/v1beta1) from "
        "Prometheus queries, with kube-apiserver's delegated authentication and authorization.",
    )
    net = parser.add_argument_group("serving")
    net.add_argument("--bind-address", default="0.0.0.0", help="listen address (default %(default)s)")  # noqa: S104
    net.add_argument(
        "--secure-port", type=argtypes.port, default=6443, help="HTTPS port (default %(default)s)"
    )
    net.add_argument("--tls-cert-file", type=Path, help="serving certificate chain (PEM); reloaded on change")
    net.add_argument("--tls-private-key-file", type=Path, help="serving private key (PEM)")
    net.add_argument(
        "--tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="DNS name or IP for the generated certificate when no --tls-cert-file is given (repeatable; "
        "default: localhost, 127.0.0.1 and the Service names from --service-name)",
    )
    net.add_argument(
        "--service-name",
        default="tgi-autoscaler-adapter",
        help="Service in front of the adapter, for the generated certificate's names (default %(default)s)",
    )
    net.add_argument(
        "--tls-reload-interval",
        type=argtypes.positive,
        default=10.0,
        metavar="SECONDS",
        help="how often the serving files are checked for a renewal (default %(default)s)",
    )
    net.add_argument(
        "--shutdown-grace",
        type=argtypes.non_negative,
        default=10.0,
        metavar="SECONDS",
        help="time in-flight requests get to finish on SIGTERM (default %(default)s)",
    )

    kube = parser.add_argument_group("Kubernetes")
    kube.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig for reviews and ConfigMaps (default: in-cluster ServiceAccount, else $KUBECONFIG)",
    )
    kube.add_argument(
        "--authentication-configmap",
        type=_object_ref,
        default=(AUTH_CONFIGMAP_NAMESPACE, AUTH_CONFIGMAP_NAME),
        metavar="NAMESPACE/NAME",
        help="where kube-apiserver publishes the front-proxy CA and headers "
        f"(default {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME})",
    )
    kube.add_argument(
        "--authentication-token-cache-ttl", type=argtypes.non_negative, default=10.0, metavar="SECONDS"
    )
    kube.add_argument(
        "--authorization-allow-cache-ttl", type=argtypes.non_negative, default=10.0, metavar="SECONDS"
    )
    kube.add_argument(
        "--authorization-deny-cache-ttl", type=argtypes.non_negative, default=10.0, metavar="SECONDS"
    )
    kube.add_argument(
        "--authorization-always-allow-groups",
        default="system:masters",
        metavar="GROUP[,GROUP]",
        help="groups allowed without a SubjectAccessReview (default %(default)s; empty for none)",
    )
    kube.add_argument(
        "--insecure-skip-auth",
        action="store_true",
        help="DEVELOPMENT ONLY: serve everyone without authentication or authorization; "
        "only allowed with a loopback --bind-address",
    )

    prom = parser.add_argument_group("Prometheus")
    prom.add_argument("--prometheus-url", help="base URL of the Prometheus query API")
    prom.add_argument("--prometheus-timeout", type=argtypes.positive, default=3.0, metavar="SECONDS")
    prom.add_argument("--prometheus-bearer-token-file", help="file with a bearer token (re-read on change)")
    prom.add_argument("--prometheus-ca-file", help="PEM bundle to verify an https Prometheus")
    prom.add_argument("--prometheus-insecure-skip-verify", action="store_true")
    prom.add_argument(
        "--prometheus-header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra request header, e.g. X-Scope-OrgID=tenant (repeatable)",
    )
    prom.add_argument("--cache-ttl", type=argtypes.non_negative, default=None, metavar="SECONDS")
    prom.add_argument(
        "--no-prefetch",
        action="store_true",
        help="one Prometheus query per selector instead of the grouped prefetch (prefetch.enabled: false)",
    )
    prom.add_argument(
        "--settings-file",
        type=Path,
        help="adapter settings YAML (prometheus: ..., cache: ...) instead of the --prometheus-* flags",
    )

    metrics = parser.add_argument_group("metric definitions")
    source = metrics.add_mutually_exclusive_group()
    source.add_argument(
        "--metrics-configmap",
        type=_object_ref,
        metavar="NAMESPACE/NAME",
        help="ConfigMap whose key metrics.yaml defines the served metrics (watched)",
    )
    source.add_argument("--metrics-file", type=Path, help="metrics.yaml file (re-read on change)")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> AdapterSettings:
    if args.settings_file is not None:
        if args.prometheus_url or args.prometheus_bearer_token_file or args.prometheus_ca_file:
            raise OptionsError("--settings-file and --prometheus-* flags are exclusive; use one")
        try:
            text = args.settings_file.read_text()
        except OSError as exc:
            raise OptionsError(f"--settings-file {args.settings_file}: {exc.strerror}") from exc
        settings = parse_adapter_settings_yaml(text, source=str(args.settings_file))
        if args.cache_ttl is not None:
            settings = settings.model_copy(update={"cache": CacheSettings(ttl_seconds=args.cache_ttl)})
        if args.no_prefetch:
            settings = settings.model_copy(update={"prefetch": PrefetchSettings(enabled=False)})
        return settings
    if not args.prometheus_url:
        raise OptionsError("--prometheus-url (or --settings-file) is required")
    headers: dict[str, str] = {}
    for item in args.prometheus_header:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise OptionsError(f"--prometheus-header {item!r}: expected NAME=VALUE")
        headers[name] = value
    connection = {
        "url": args.prometheus_url,
        "timeoutSeconds": args.prometheus_timeout,
        "bearerTokenFile": args.prometheus_bearer_token_file,
        "caFile": args.prometheus_ca_file,
        "insecureSkipVerify": args.prometheus_insecure_skip_verify,
        "headers": headers,
    }
    try:
        return AdapterSettings(
            prometheus=PrometheusConnection.model_validate(
                {k: v for k, v in connection.items() if v is not None}
            ),
            cache=CacheSettings() if args.cache_ttl is None else CacheSettings(ttl_seconds=args.cache_ttl),
            prefetch=PrefetchSettings(enabled=not args.no_prefetch),
        )
    except ValueError as exc:
        raise OptionsError(f"--prometheus-* / --cache-ttl: {exc}") from exc


def _default_sans(service_name: str) -> list[str]:
    sans = ["localhost", "127.0.0.1"]
    namespace = os.environ.get("POD_NAMESPACE")
    if namespace:
        sans = [f"{service_name}.{namespace}.svc", f"{service_name}.{namespace}.svc.cluster.local", *sans]
    return sans


def options_from_args(args: argparse.Namespace) -> AdapterOptions:
    """Validated options from parsed flags; raises :class:`OptionsError` naming the flags."""
    if (args.tls_cert_file is None) != (args.tls_private_key_file is None):
        raise OptionsError("--tls-cert-file and --tls-private-key-file must be given together")
    if args.tls_cert_file is not None and args.tls_san:
        raise OptionsError("--tls-san only applies to a generated certificate; drop it or --tls-cert-file")
    if args.insecure_skip_auth:
        try:
            loopback = ipaddress.ip_address(args.bind_address).is_loopback
        except ValueError:
            loopback = args.bind_address == "localhost"
        if not loopback:
            raise OptionsError(
                f"--insecure-skip-auth serves everyone; it needs a loopback --bind-address "
                f"(got {args.bind_address})"
            )
    groups = tuple(g.strip() for g in args.authorization_always_allow_groups.split(",") if g.strip())
    return AdapterOptions(
        bind_address=args.bind_address,
        port=args.secure_port,
        tls_cert_file=args.tls_cert_file,
        tls_key_file=args.tls_private_key_file,
        tls_sans=tuple(args.tls_san) or tuple(_default_sans(args.service_name)),
        tls_reload_interval_s=args.tls_reload_interval,
        shutdown_grace_s=args.shutdown_grace,
        kubeconfig=args.kubeconfig,
        authentication_configmap=args.authentication_configmap,
        token_cache_ttl_s=args.authentication_token_cache_ttl,
        allow_cache_ttl_s=args.authorization_allow_cache_ttl,
        deny_cache_ttl_s=args.authorization_deny_cache_ttl,
        always_allow_groups=groups,
        insecure_skip_auth=args.insecure_skip_auth,
        settings=_settings(args),
        metrics_configmap=args.metrics_configmap,
        metrics_file=args.metrics_file,
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except (OptionsError, ConfigError) as exc:
        print(f"tgi-autoscaler adapter: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_adapter(options))
