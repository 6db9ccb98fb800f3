"""Configuration of the external metrics adapter: metric definitions and the Prometheus connection.

Two documents, both YAML with camelCase keys and unknown keys rejected:

- the *metrics* document (a file, or key ``metrics.yaml`` of a ConfigMap, reloaded while running)
  lists the external metrics the adapter serves, each a PromQL template over ``$matchers``;
- the *adapter settings* (read once at start) say how to reach Prometheus and how long to cache.

Every template is compiled when the document is parsed, so a broken definition is reported with its
path (``metrics[1].query``) and name before it can be served; a running adapter keeps its last good
definitions instead. Secrets (token, password) are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tgi_autoscaler.config.base import ConfigModel, issue, load_yaml, raise_issues, validate
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.engines import ENGINES
from tgi_autoscaler.k8s.names import label_key_errors
from tgi_autoscaler.promql.errors import TemplateError
from tgi_autoscaler.promql.matchers import is_valid_label_name
from tgi_autoscaler.promql.query import QueryBuilder
from tgi_autoscaler.promql.shape import QueryShape, analyze_template
from tgi_autoscaler.promql.template import PLACEHOLDER, compile_template

__all__ = [
    "DEFAULT_METRIC_DEFINITIONS",
    "METRICS_CONFIGMAP_KEY",
    "AdapterSettings",
    "BasicAuth",
    "CacheSettings",
    "DataAgeSettings",
    "MetricDefinition",
    "MetricsConfig",
    "MetricsConfigError",
    "PrefetchSettings",
    "PrometheusConnection",
    "parse_adapter_settings_yaml",
    "parse_metrics_yaml",
]

# Data key of the adapter's metrics ConfigMap.
METRICS_CONFIGMAP_KEY: Final = "metrics.yaml"

_METRIC_NAME_RE: Final = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?")
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the client sets itself; setting them here would break requests or smuggle credentials
# past the SecretStr fields.
_RESERVED_HEADERS: Final = frozenset(
    {"authorization", "host", "content-type", "content-length", "connection", "transfer-encoding"}
)


class MetricDefinition(ConfigModel):
    """One external metric: its name in the API and the PromQL that computes it."""

    name: Annotated[
        str,
        Field(
            description="Metric name in the API path (/apis/external.metrics.k8s.io/v1beta1/"
            "namespaces/NS/NAME) and in the HPA's metric.name."
        ),
    ]
    namespace_label: Annotated[
        str,
        Field(
            description="Prometheus label holding the pod's namespace; the adapter always adds "
            'NAME="<request namespace>" to every selector.'
        ),
    ] = "namespace"
    label_map: Annotated[
        dict[str, str],
        Field(
            description="Kubernetes label key -> Prometheus label name, for keys whose Prometheus "
            "label is not the key with every character outside [a-zA-Z0-9_] replaced by '_'."
        ),
    ] = {}
    on_empty: Annotated[
        Literal["error", "zero"],
        Field(
            description="What an empty query result means. 'error' (default): no data, the HPA "
            "keeps the current replica count. 'zero': the value is 0 (only for metrics whose "
            "series legitimately disappear when idle)."
        ),
    ] = "error"
    description: Annotated[str, Field(description="Free text shown in the OpenAPI document.")] = ""
    query: Annotated[
        str,
        Field(
            description=f"PromQL template; every series selector must contain {PLACEHOLDER}, "
            f"e.g. sum(tgi_queue_size{{{PLACEHOLDER}}}). The result must be one sample."
        ),
    ]

    _builder: QueryBuilder = PrivateAttr()
    _shape: QueryShape = PrivateAttr()

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _METRIC_NAME_RE.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a valid metric name: use 1-253 of [A-Za-z0-9_.-], starting and "
                "ending with a letter or digit"
            )
        return value

    @field_validator("namespace_label")
    @classmethod
    def _check_namespace_label(cls, value: str) -> str:
        if not is_valid_label_name(value):
            raise ValueError(f"{value!r} is not a valid, non-reserved Prometheus label name")
        return value

    @field_validator("label_map")
    @classmethod
    def _check_label_map(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        namespace_label = info.data.get("namespace_label", "namespace")
        problems: list[str] = []
        for key, label in value.items():
            if errors := label_key_errors(key):
                problems.append(f"key {key!r} is not a Kubernetes label key: {'; '.join(errors)}")
            if not is_valid_label_name(label):
                problems.append(f"{key!r} -> {label!r}: not a valid, non-reserved Prometheus label name")
            elif label == namespace_label:
                problems.append(
                    f"{key!r} -> {label!r}: the namespace label is set by the adapter, not by selectors"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("query")
    @classmethod
    def _check_query(cls, value: str, info: ValidationInfo) -> str:
        try:
            compile_template(value, namespace_label=info.data.get("namespace_label", "namespace"))
        except TemplateError as exc:
            name = info.data.get("name")
            owner = f"definition {name!r}: " if name else ""
            raise ValueError(f"{owner}{exc}") from None
        return value

    def model_post_init(self, context: Any, /) -> None:
        template = compile_template(self.query, namespace_label=self.namespace_label)
        self._builder = QueryBuilder(
            template=template, namespace_label=self.namespace_label, label_map=dict(self.label_map)
        )
        self._shape = analyze_template(template)

    @property
    def shape(self) -> QueryShape:
        """The derived queries: the data age, and the grouped form if the query allows one."""
        return self._shape

    @property
    def builder(self) -> QueryBuilder:
        """The compiled query builder (template checked at load)."""
        return self._builder


# One built-in definition per series an engine scales on, straight from the engine table.
DEFAULT_METRIC_DEFINITIONS: Final[tuple[MetricDefinition, ...]] = tuple(
    MetricDefinition(
        name=served.name,
        query=served.query or f"sum({served.series}{{{PLACEHOLDER}}})",
        description=served.description,
    )
    for engine in ENGINES.values()
    for served in engine.served_metrics
)


class MetricsConfig(ConfigModel):
    """The metrics document: which external metrics are served."""

    include_defaults: Annotated[
        bool,
        Field(
            description="Also serve the built-in definitions "
            f"({', '.join(definition.name for definition in DEFAULT_METRIC_DEFINITIONS)}); a definition "
            "listed here with the same name replaces the built-in one."
        ),
    ] = True
    metrics: Annotated[list[MetricDefinition], Field(description="Metric definitions.")] = []

    @model_validator(mode="after")
    def _unique_names(self) -> MetricsConfig:
        seen: dict[str, int] = {}
        issues: list[tuple[str, str]] = []
        for index, definition in enumerate(self.metrics):
            if definition.name in seen:
                issues.append(
                    issue(
                        f"metrics[{index}].name",
                        f"{definition.name!r} is already defined by metrics[{seen[definition.name]}]",
                    )
                )
            seen.setdefault(definition.name, index)
        raise_issues(issues)
        return self

    def definitions(self) -> dict[str, MetricDefinition]:
        """Served definitions by name: defaults (if included) overridden by the listed ones."""
        served: dict[str, MetricDefinition] = {}
        if self.include_defaults:
            served.update((definition.name, definition) for definition in DEFAULT_METRIC_DEFINITIONS)
        served.update((definition.name, definition) for definition in self.metrics)
        return served


class BasicAuth(ConfigModel):
    """HTTP basic authentication towards Prometheus; exactly one of password, passwordFile."""

    username: str
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("set exactly one of password, passwordFile")
        return self


class PrometheusConnection(ConfigModel):
    """How to reach the Prometheus-compatible query API (Prometheus, Thanos Query, Mimir, ...)."""

    url: Annotated[
        str,
        Field(
            description="Base URL including any path prefix, e.g. http://prometheus:9090 or "
            "https://mimir/prometheus; /api/v1/query is appended."
        ),
    ]
    timeout_seconds: Annotated[
        float,
        Field(
            gt=0,
            le=60,
            description="Per-query deadline. Well under the HPA's 15 s sync period, so a hung "
            "Prometheus turns into a prompt 503 instead of a stalled autoscaler.",
        ),
    ] = 3.0
    bearer_token: SecretStr | None = None
    bearer_token_file: Annotated[
        str | None,
        Field(description="Read on every change of the file (projected tokens rotate)."),
    ] = None
    basic_auth: BasicAuth | None = None
    ca_file: Annotated[str | None, Field(description="PEM bundle to verify an https URL.")] = None
    insecure_skip_verify: bool = False
    headers: Annotated[
        dict[str, str],
        Field(description="Extra request headers, e.g. X-Scope-OrgID for Mimir, Cortex or Thanos."),
    ] = {}

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        match = re.fullmatch(r"(https?)://([^/?#\s@]+)(/[^?#\s]*)?", value)
        if match is None:
            raise ValueError(
                f"{value!r} is not an http(s) URL without credentials, query or fragment, e.g. "
                "http://prometheus:9090 (credentials go in basicAuth or bearerToken)"
            )
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [
            f"{name!r} is not a valid header name" for name in value if not _HEADER_NAME_RE.fullmatch(name)
        ]
        problems += [
            f"{name!r} is set by the client (use bearerToken or basicAuth for credentials)"
            for name in value
            if name.lower() in _RESERVED_HEADERS
        ]
        problems += [
            f"value of {name!r} contains a line break" for name, v in value.items() if "\n" in v or "\r" in v
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> PrometheusConnection:
        given = [
            name
            for name, present in (
                ("bearerToken", self.bearer_token is not None),
                ("bearerTokenFile", self.bearer_token_file is not None),
                ("basicAuth", self.basic_auth is not None),
            )
            if present
        ]
        if len(given) > 1:
            raise ValueError(f"set at most one of bearerToken, bearerTokenFile, basicAuth (got {given})")
        if self.insecure_skip_verify and self.ca_file is not None:
            raise ValueError("caFile and insecureSkipVerify contradict each other; set one")
        return self


class CacheSettings(ConfigModel):
    """Short result cache shared by identical reads (the HPA and kubectl often ask together)."""

    ttl_seconds: Annotated[
        float,
        Field(
            ge=0,
            le=10,
            description="How long a Prometheus answer is reused for the same PromQL. Keep it well "
            "under the scrape interval; 0 disables caching (concurrent reads still share a query).",
        ),
    ] = 0.5


class PrefetchSettings(ConfigModel):
    """Grouped prefetch: one background query per definition answers every exact-match selector.

    For a definition whose query allows it (see docs/adapter.md), the adapter evaluates the query
    grouped by the labels the selectors use (``sum by (namespace, app_kubernetes_io_instance)
    (...)``) once per refresh, and answers selectors that pin exactly those labels from memory, so
    the number of Prometheus queries follows the number of definitions, not of HPAs.
    """

    enabled: Annotated[
        bool, Field(description="Prefetch grouped queries; false sends one query per selector.")
    ] = True
    refresh_seconds: Annotated[
        float,
        Field(gt=0, le=60, description="How often each grouped query that is being read is evaluated."),
    ] = 2.0
    max_staleness_seconds: Annotated[
        float,
        Field(
            gt=0,
            le=300,
            description="Oldest grouped answer that is served; past it (Prometheus failing) a read "
            "queries Prometheus itself, and answers 503 if that fails too. At least refreshSeconds.",
        ),
    ] = 10.0
    idle_seconds: Annotated[
        float,
        Field(
            gt=0,
            le=3600,
            description="A grouped query no read has used for this long stops being refreshed "
            "(HPAs read every 15 s by default).",
        ),
    ] = 120.0

    @model_validator(mode="after")
    def _staleness_covers_refresh(self) -> PrefetchSettings:
        if self.max_staleness_seconds < self.refresh_seconds:
            raise ValueError(
                f"maxStalenessSeconds ({self.max_staleness_seconds:g}) must be at least "
                f"refreshSeconds ({self.refresh_seconds:g}), or no grouped answer would ever be served"
            )
        return self


class DataAgeSettings(ConfigModel):
    """How old the data behind a value may be: ``timestamp()`` of its samples, not the query's time."""

    scrape_interval_seconds: Annotated[
        float,
        Field(gt=0, le=3600, description="Prometheus' scrape interval for the engine pods."),
    ] = 15.0
    max_seconds: Annotated[
        float | None,
        Field(
            gt=0,
            le=86400,
            description="Oldest data served; older data is a 503 naming its age, so the HPA holds "
            "its replicas. Default: three scrape intervals.",
        ),
    ] = None

    @property
    def bound_seconds(self) -> float:
        """The effective bound."""
        return self.max_seconds if self.max_seconds is not None else 3 * self.scrape_interval_seconds


class AdapterSettings(ConfigModel):
    """Settings read once when the adapter starts."""

    prometheus: PrometheusConnection
    cache: CacheSettings = CacheSettings()
    prefetch: PrefetchSettings = PrefetchSettings()
    data_age: DataAgeSettings = DataAgeSettings()


class MetricsConfigError(ConfigError):
    """Invalid adapter configuration; ``issues`` lists every problem with its key path."""


_METRICS: Final = "metrics configuration"
_SETTINGS: Final = "adapter settings"


def parse_metrics_yaml(text: str, *, source: str) -> MetricsConfig:
    """Parse and compile a metrics document; raises ``MetricsConfigError`` listing every problem."""
    document = load_yaml(text, source=source, what=_METRICS, empty={}, error=MetricsConfigError)
    return validate(
        MetricsConfig, document, source=source, what=_METRICS, by_name=False, error=MetricsConfigError
    )


def parse_adapter_settings_yaml(text: str, *, source: str) -> AdapterSettings:
    """Parse the adapter settings document; raises ``MetricsConfigError`` listing every problem."""
    document = load_yaml(text, source=source, what=_SETTINGS, empty={}, error=MetricsConfigError)
    return validate(
        AdapterSettings, document, source=source, what=_SETTINGS, by_name=False, error=MetricsConfigError
    )
