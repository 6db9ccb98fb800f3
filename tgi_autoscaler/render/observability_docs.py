"""docs/alerts-and-dashboards.md, generated from the rules and panels themselves.

A hand-written list of alert expressions drifts from the code the first time a threshold changes;
this module renders the document from ``alert_rules``, ``self_alert_rules`` and the panel
definitions, and a unit test fails when the committed file differs (rerun it with
``TGI_UPDATE_MANIFESTS=1`` to rewrite it).
"""

from __future__ import annotations

from tgi_autoscaler.config.observability import AlertsSpec
from tgi_autoscaler.engines import ENGINES, Counted
from tgi_autoscaler.render.alerts import AlertRule, alert_rules, skipped_alerts
from tgi_autoscaler.render.dashboard import PanelDef, panel_defs
from tgi_autoscaler.render.self_monitoring import (
    DEFAULT_NAMESPACE,
    SelfMonitoringThresholds,
    self_alert_rules,
    self_panel_defs,
)

__all__ = ["alerts_and_dashboards_markdown"]

_EXAMPLE_NAME = "llama"
_EXAMPLE_NAMESPACE = "llm"

_INTRO = """# Alerts and dashboards

Generated from `tgi_autoscaler/render/` by `observability_docs.py`; do not edit by hand (run
`TGI_UPDATE_MANIFESTS=1 pytest tests/unit/test_alerts_docs.py` after changing a rule or panel).

Every service gets a PrometheusRule (one group, `tgi-autoscaler.<namespace>.<name>`) and, unless
`dashboard.enabled: false`, a Grafana dashboard ConfigMap. The rules use the metric names the
engines really export (TGI: `tgi_request_duration_bucket`, `tgi_request_success`, no `_seconds`, no
`_total`); rules written for `tgi_request_duration_seconds_bucket` or `tgi_request_success_total`
load fine and never fire.

How they are proven:

- `tests/integration/test_promtool_rules.py`: `promtool check rules` on every rendered rule file,
  and `promtool test rules` files generated from the spec's own thresholds (`tests/promtool/`): each
  alert fires after its `for` (not before), shows the expected value in its annotations, resolves
  when the condition clears, stays quiet just below the threshold and for other services and
  namespaces. Negative controls show the same tests fail for the seed article's metric names and for
  wrong thresholds.
- `tests/integration/test_promql_on_prometheus.py`: every rule, panel and adapter template evaluated
  by a real Prometheus scraping loaded TGI, vLLM and SGLang simulator fleets.
- `tests/e2e/test_alerts_kube_state_metrics.py`: real kube-state-metrics over a real HPA whose pods
  never start; `TGIReplicasNotStarting` and `TGIScalingInactive` go pending and fire.

Scoping: engine series are selected by `namespace` and `app_kubernetes_io_instance` (the pod label
`app.kubernetes.io/instance` as Prometheus' labelmap writes it); kube-state-metrics series by
`namespace` plus `horizontalpodautoscaler`/`deployment` = the service name. Every expression is
aggregated (`sum`/`avg`/`max by`) before it is compared, so a service raises one alert however many
replicas it has. Every alert carries `severity`, `service` and the `AlertsSpec.labels`, and a
`summary` and `description` that show `{{ $value }}` and say what to check first.
"""


def _md_code(text: str) -> str:
    return "```promql\n" + text.strip() + "\n```"


def _threshold(spec: AlertsSpec, rule: AlertRule) -> str:
    for attr, info in AlertsSpec.model_fields.items():
        if info.alias == rule.spec_key:
            value = getattr(spec, attr)
            threshold = getattr(value, "threshold", None)
            enabled = "" if value.enabled else " (off by default)"
            return ("-" if threshold is None else f"{threshold:g}") + enabled
    return "-"


def _service_alerts() -> list[str]:
    spec = AlertsSpec.model_validate({"throughputFloor": {"enabled": True}})
    defaults = AlertsSpec()
    lines = [
        "## Per-service alerts",
        "",
        f"Shown for service `{_EXAMPLE_NAME}` in namespace `{_EXAMPLE_NAMESPACE}`, engine `tgi`, default "
        "`AlertsSpec` (rate window `5m`). Keys are under `alerts:` in the service YAML; each alert "
        "takes `enabled`, `for`, `severity` and (where listed) `threshold`.",
        "",
        "| Alert | `alerts.` key | Default threshold | Default `for` | Severity |",
        "| --- | --- | --- | --- | --- |",
    ]
    rules = alert_rules(_EXAMPLE_NAME, _EXAMPLE_NAMESPACE, spec, engine="tgi")
    for rule in rules:
        threshold = _threshold(defaults, rule)
        cells = (f"`{rule.alert}`", f"`{rule.spec_key}`", threshold, rule.for_, rule.severity)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for rule in rules:
        annotations = rule.annotations()
        lines += [
            f"### {rule.alert}",
            "",
            _md_code(rule.expr),
            "",
            f"- Summary: {annotations['summary']}",
            f"- Description: {annotations['description']}",
            "",
        ]
    return lines


def _spelled(value: str | Counted) -> str:
    if isinstance(value, str):
        return value
    text = value.name + (f"{{{value.matchers}}}" if value.matchers else "")
    return text if value.minus is None else f"{text} - {_spelled(value.minus)}"


def _engines() -> list[str]:
    lines = [
        "## Engines",
        "",
        "| Signal | " + " | ".join(ENGINES) + " |",
        "| --- | " + " | ".join("---" for _ in ENGINES) + " |",
    ]
    fields = (
        ("queue (gauge)", "queue_size"),
        ("running batch (gauge)", "running"),
        ("end-to-end latency (histogram)", "request_duration"),
        ("queue wait (histogram)", "queue_duration"),
        ("time per token (histogram)", "decode_latency"),
        ("arrivals (counter)", "requests"),
        ("finished requests (counter)", "finished"),
        ("successes (counter)", "successes"),
        ("failures (counter)", "failures"),
        ("generated tokens (counter)", "generated_tokens"),
    )
    for title, attr in fields:
        cells = []
        for engine in ENGINES.values():
            value = getattr(engine.metrics, attr)
            cells.append("—" if value is None else f"`{_spelled(value)}`")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines.append("")
    for kind in ENGINES:
        skipped = skipped_alerts(kind.value)
        if skipped:
            lines.append(
                f"- `{kind.value}`: no rule for {', '.join(f'`{key}`' for key in skipped)} "
                "(the engine does not export the series it needs)."
            )
    lines += [
        "The names are those of the pinned images, read from each engine's own metric definitions "
        "(see `tgi_autoscaler/engines.py` for the file and version next to each name). vLLM's "
        "`vllm:request_success_total` (one series per `finished_reason`: `stop`, `length`, `abort`) "
        "and SGLang's `sglang:num_requests_total` count every finished request, aborted ones "
        "included: successes leave the aborts out, and the error ratio is aborted over finished "
        "requests. vLLM's API server also exports `http_requests_total{handler, method, status}` "
        "(`status` grouped as `2xx`, `4xx`, `5xx`), which sees requests refused before they reach "
        "the engine.",
        "",
        "Where an engine renamed a series, the rules and panels use the name of the release the "
        "service's image tag names (an image without a version tag gets the pinned names):",
        "",
    ]
    for kind, engine in ENGINES.items():
        for rename in engine.renamed:
            before = ".".join(str(part) for part in rename.before)
            for field, old in rename.names.items():
                lines.append(
                    f"- `{kind.value}` before {before}: `{old}` instead of "
                    f"`{getattr(engine.metrics, field)}` ({rename.source})."
                )
    lines.append("")
    spec = AlertsSpec.model_validate({"throughputFloor": {"enabled": True}})
    for kind in ENGINES:
        if kind.value == "tgi":
            continue
        rules = alert_rules(_EXAMPLE_NAME, _EXAMPLE_NAMESPACE, spec, engine=kind.value)
        for rule in rules:
            if rule.spec_key in ("errorRatio", "throughputFloor"):
                lines += [f"`{rule.alert}` for `{kind.value}`:", "", _md_code(rule.expr), ""]
    return lines


def _self_alerts() -> list[str]:
    t = SelfMonitoringThresholds()
    lines = [
        "## Alerts on tgi-autoscaler itself",
        "",
        f"`manifests/monitoring/prometheusrule.yaml` (namespace `{DEFAULT_NAMESPACE}`), from "
        "`render/self_monitoring.py`; thresholds in `SelfMonitoringThresholds` "
        f"(window `{t.window}`).",
        "",
        "| Alert | Default `for` | Severity |",
        "| --- | --- | --- |",
    ]
    rules = self_alert_rules()
    lines += [f"| `{rule.alert}` | {rule.for_} | {rule.severity} |" for rule in rules]
    lines.append("")
    for rule in rules:
        annotations = rule.annotations()
        lines += [
            f"### {rule.alert}",
            "",
            _md_code(rule.expr),
            "",
            f"- Summary: {annotations['summary']}",
            f"- Description: {annotations['description']}",
            "",
        ]
    return lines


def _panels(title: str, intro: str, panels: list[PanelDef]) -> list[str]:
    lines = [title, "", intro, ""]
    row = None
    for panel in panels:
        if panel.row != row:
            row = panel.row
            lines += [f"### Row: {row}", ""]
        lines += [f"#### {panel.title} (`{panel.unit}`)", "", panel.description, ""]
        for query in panel.queries:
            lines += [
                f"- `{query.legend}` ({query.source.value}):",
                "",
                "  " + _md_code(query.expr).replace("\n", "\n  "),
                "",
            ]
    return lines


def alerts_and_dashboards_markdown() -> str:
    lines = [_INTRO]
    lines += _service_alerts()
    lines += _engines()
    lines += _self_alerts()
    lines += _panels(
        "## Per-service dashboard",
        'A ConfigMap labelled `grafana_dashboard: "1"` with annotation `grafana_folder` '
        "(`dashboard.folder`), in `dashboard.namespace`, else the controller's `--dashboard-namespace`, "
        "else the service's namespace. Variables: `datasource` (Prometheus), `namespace`, `service` "
        "(defaulting to this service). Panels for the `tgi` engine; panels whose series an engine lacks "
        "are left out. GPU labels follow `dashboard.gpuPodLabel`/`gpuNamespaceLabel`.",
        panel_defs("tgi"),
    )
    lines += _panels(
        "## tgi-autoscaler dashboard",
        "`manifests/monitoring/dashboard-configmap.yaml`: the adapter and the controller.",
        self_panel_defs(),
    )
    return "\n".join(lines).rstrip() + "\n"
