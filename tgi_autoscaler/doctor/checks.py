"""The links of the chain from the pods to the HPA, each a pure check over a snapshot.

Every check returns one :class:`Finding`: the link, ``ok``/``broken``/``unknown``, what was seen and
the fix. ``unknown`` means the check could not look (a read failed, or an earlier link is broken so
this one cannot be reached); it is never a guess of ``ok``. The chain is walked in dependency order
(:data:`LINKS`): who serves ``external.metrics.k8s.io``, the adapter answering, the adapter reaching
Prometheus, the pods running, their series, the HPA, then what the service adds around it (alert
rules loaded, dashboard, the controller's status). :func:`first_broken` is the link to fix first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tgi_autoscaler.config.constants import (
    GRAFANA_DASHBOARD_LABEL,
    GRAFANA_DASHBOARD_LABEL_VALUE,
    LABEL_SERVICE_CONFIGMAP,
    LABEL_SERVICE_CONFIGMAP_VALUE,
)
from tgi_autoscaler.doctor.pods import PodProblem, diagnose_pod
from tgi_autoscaler.doctor.snapshot import (
    ClusterSnapshot,
    MetricRead,
    Obj,
    PrometheusSnapshot,
    SeriesSample,
    ServiceSnapshot,
    Unreadable,
)

__all__ = [
    "APISERVICE",
    "LINKS",
    "Finding",
    "Link",
    "Status",
    "check_adapter",
    "check_apiservice",
    "check_controller",
    "check_dashboard",
    "check_hpa",
    "check_pods",
    "check_prometheus",
    "check_rules",
    "check_series",
    "check_service",
    "first_broken",
    "hpa_external_metrics",
    "selector_string",
]

APISERVICE = "v1beta1.external.metrics.k8s.io"
Status = Literal["ok", "broken", "unknown"]
Link = Literal[
    "apiservice", "adapter", "prometheus", "pods", "series", "hpa", "rules", "dashboard", "controller"
]
LINKS: tuple[Link, ...] = (
    "apiservice",
    "adapter",
    "prometheus",
    "pods",
    "series",
    "hpa",
    "rules",
    "dashboard",
    "controller",
)


@dataclass(frozen=True)
class Finding:
    link: Link
    status: Status
    seen: str
    fix: str = ""
    service: str = ""  # namespace/name; empty for the cluster-wide links


def first_broken(findings: Sequence[Finding]) -> Finding | None:
    """The broken link to fix first: the earliest in chain order."""
    broken = [f for f in findings if f.status == "broken"]
    return min(broken, key=lambda f: LINKS.index(f.link)) if broken else None


# --- who serves external.metrics.k8s.io -------------------------------------------------------

# Servers known to register the same APIService, by the (namespace, name) their manifests use.
_KNOWN_OWNERS: tuple[tuple[str, str], ...] = (
    ("keda-operator-metrics-apiserver", "KEDA's metrics server"),
    ("prometheus-adapter", "prometheus-adapter"),
    ("custom-metrics-apiserver", "prometheus-adapter (custom-metrics-apiserver)"),
    ("datadog-cluster-agent-metrics-api", "the Datadog Cluster Agent"),
)
# Words of the availability controller's message meaning "nothing answered at that address".
_UNREACHABLE = (
    "connection refused",
    "no route to host",
    "i/o timeout",
    "context deadline exceeded",
    "EOF",
    "connection reset",
    "no endpoints",
    "service unavailable",
)


def _condition(obj: Obj, kind: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _owner(namespace: str, name: str) -> str:
    for fragment, label in _KNOWN_OWNERS:
        if fragment in name:
            return f"{label} ({namespace}/{name})"
    return f"another server ({namespace}/{name})"


def _apiservice_unreachable(apiservice: Obj) -> str | None:
    """The Available condition's message when it says the backend does not answer."""
    available = _condition(apiservice, "Available")
    if available is None or available.get("status") == "True":
        return None
    reason = str(available.get("reason") or "")
    message = str(available.get("message") or "")
    if reason in ("MissingEndpoints", "EndpointsAccessError") or any(w in message for w in _UNREACHABLE):
        return f"{reason}: {message}"
    return None


def check_apiservice(cluster: ClusterSnapshot) -> Finding:
    api = cluster.apiservice
    want_ns, want_name = cluster.expected_service
    if isinstance(api, Unreadable):
        return Finding(
            "apiservice",
            "unknown",
            f"cannot read APIService {APISERVICE}: {api.error}",
            "check the kubeconfig and that you may `get apiservices` (cluster-scoped)",
        )
    if api is None:
        return Finding(
            "apiservice",
            "broken",
            f"APIService {APISERVICE} does not exist: nothing serves external metrics, so every "
            "HPA External metric reads as <unknown>",
            "register the adapter: `kubectl apply -k manifests/adapter` (it includes the APIService)",
        )
    service = (api.get("spec") or {}).get("service")
    if not service:
        return Finding(
            "apiservice",
            "broken",
            f"APIService {APISERVICE} has no spec.service: kube-apiserver would serve it locally",
            f"point it at the adapter: spec.service {{namespace: {want_ns}, name: {want_name}}}",
        )
    ns, name = str(service.get("namespace") or ""), str(service.get("name") or "")
    if (ns, name) != (want_ns, want_name):
        owner = _owner(ns, name)
        return Finding(
            "apiservice",
            "broken",
            f"APIService {APISERVICE} points to {owner}, not to the tgi-autoscaler adapter "
            f"({want_ns}/{want_name}); only one server can serve external metrics per cluster",
            "either scale with that server's own metrics (for KEDA: a ScaledObject with a prometheus "
            "trigger on the same query), or hand the APIService to the adapter: `kubectl apply -k "
            "manifests/adapter` and remove the other server's APIService from its chart/manifests so it "
            "is not re-registered (docs/adapter.md#one-owner-per-cluster)",
        )
    available = _condition(api, "Available")
    if available is None:
        return Finding(
            "apiservice",
            "unknown",
            f"APIService {APISERVICE} points to {ns}/{name} but has no Available condition yet",
            "wait a few seconds: kube-apiserver's availability check has not run",
        )
    if available.get("status") == "True":
        return Finding("apiservice", "ok", f"{APISERVICE} points to {ns}/{name} and is Available")
    if _apiservice_unreachable(api) is not None:
        return Finding(
            "apiservice",
            "ok",
            f"{APISERVICE} points to {ns}/{name}; it is not Available because the adapter does not "
            "answer (next link)",
        )
    reason, message = available.get("reason"), available.get("message")
    fix = "see `kubectl describe apiservice " + APISERVICE + "`"
    if "x509" in str(message) or "certificate" in str(message):
        fix = (
            "the APIService caBundle must be the CA that signed the adapter's serving certificate for "
            f"{name}.{ns}.svc (cert-manager overlay: manifests/adapter/cert-manager)"
        )
    elif reason == "ServiceNotFound":
        fix = f"create the Service {ns}/{name} (`kubectl apply -k manifests/adapter`)"
    elif "403" in str(message) or "401" in str(message):
        fix = (
            "the adapter must be allowed to read kube-system/extension-apiserver-authentication "
            "(RoleBinding to extension-apiserver-authentication-reader in manifests/adapter)"
        )
    return Finding("apiservice", "broken", f"{APISERVICE} is not Available: {reason}: {message}", fix)


# --- the adapter answers, and reaches Prometheus ----------------------------------------------


def _from_prometheus(read: MetricRead) -> bool:
    """A 503 the adapter itself sent because Prometheus failed (its messages name Prometheus)."""
    return read.status == 503 and "Prometheus" in read.message


def check_adapter(cluster: ClusterSnapshot, reads: Sequence[MetricRead]) -> Finding:
    api = cluster.apiservice
    if isinstance(api, Unreadable) or api is None or check_apiservice(cluster).status == "broken":
        return Finding("adapter", "unknown", "not reached: the APIService does not route to the adapter")
    ns, name = cluster.expected_service
    down = _apiservice_unreachable(api)
    if down is not None:
        return Finding(
            "adapter",
            "broken",
            f"the adapter {ns}/{name} does not answer kube-apiserver: {down}",
            f"check its pods: `kubectl -n {ns} get pods,endpoints -l app.kubernetes.io/name={name}` and "
            f"`kubectl -n {ns} logs deploy/{name}`",
        )
    if not reads:
        return Finding("adapter", "unknown", "no external metric to read")
    if all(r.status is None for r in reads):
        return Finding("adapter", "unknown", f"kube-apiserver did not answer: {reads[0].message}")
    for read in reads:
        if read.status in (401, 403):
            return Finding(
                "adapter",
                "broken",
                f"reading {read.metric} through kube-apiserver: {read.status} {read.reason}: {read.message}",
                "the HPA controller needs `list` on external.metrics.k8s.io (manifests/adapter RBAC), and "
                "the adapter must trust the front-proxy CA (extension-apiserver-authentication)",
            )
        if read.status is not None and read.status >= 500 and not _from_prometheus(read):
            return Finding(
                "adapter",
                "broken",
                f"reading {read.metric} through kube-apiserver: {read.status} {read.reason}: {read.message}",
                f"kube-apiserver cannot reach the adapter: `kubectl -n {ns} get pods,endpoints` and "
                f"`kubectl -n {ns} logs deploy/{name}`",
            )
    return Finding("adapter", "ok", f"the adapter {ns}/{name} answers through kube-apiserver")


def check_prometheus(reads: Sequence[MetricRead], prometheus: PrometheusSnapshot | Unreadable) -> Finding:
    failed = [r for r in reads if _from_prometheus(r)]
    if failed:
        return Finding(
            "prometheus",
            "broken",
            f"the adapter cannot query Prometheus (reading {failed[0].metric}: {failed[0].message}); the "
            "HPA holds its replicas until it can",
            "check that Prometheus is up and that the adapter's `prometheus.url` (its metrics ConfigMap, or "
            "--prometheus-url) reaches it: `kubectl -n tgi-autoscaler logs deploy/tgi-autoscaler-adapter`",
        )
    if isinstance(prometheus, Unreadable):
        return Finding(
            "prometheus",
            "unknown",
            f"doctor cannot query {prometheus.source}: {prometheus.error}",
            "pass a --prometheus-url reachable from here (e.g. through `kubectl port-forward`)",
        )
    if isinstance(prometheus.selected, Unreadable):
        return Finding(
            "prometheus",
            "broken",
            f"Prometheus at {prometheus.url} does not answer: {prometheus.selected.error}",
            "start Prometheus, or pass the --prometheus-url the adapter uses",
        )
    return Finding("prometheus", "ok", f"the adapter and doctor query Prometheus at {prometheus.url}")


# --- pods, and their series -------------------------------------------------------------------

_POD_FIXES: Mapping[str, str] = {
    "insufficient": (
        "no node has the free {subject} the pod requests: add GPU nodes (or let the cluster autoscaler add "
        "them), lower resources.gpus, or lower autoscaling.maxReplicas to what the nodes hold"
    ),
    "taint": (
        "the pods do not tolerate the nodes' taint {subject}: add it to scheduling.tolerations (for the "
        "GPU taint: key nvidia.com/gpu, operator Exists, effect NoSchedule)"
    ),
    "claim": (
        "the PersistentVolumeClaim {subject} is not bound: `kubectl describe pvc {subject}`; its "
        "storageClassName must exist and provision volumes (cache.*)"
    ),
    "affinity": "no node matches scheduling.nodeSelector / affinity: fix the labels or the selector",
    "unscheduled": "`kubectl describe pod {pod}`: the scheduler has not placed it",
    "image": (
        "the image {subject} cannot be pulled: check engine.image and tag, the registry's reachability "
        "and imagePullSecrets"
    ),
    "crash": "the server exits: `kubectl logs {pod} --previous`",
    "not-ready": (
        "Running but not Ready: the model may still be loading (probes.startup) or its readiness probe fails"
    ),
}


def _running(pods: Sequence[Obj]) -> list[Obj]:
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running"
        and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]


def _ready(pod: Obj) -> bool:
    condition = _condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def _pod_fix(problem: PodProblem) -> str:
    return _POD_FIXES[problem.kind].format(subject=problem.subject or "?", pod=problem.pod)


def check_pods(svc: ServiceSnapshot) -> Finding:
    deployment, pods = svc.deployment, svc.pods
    if isinstance(deployment, Unreadable):
        return Finding("pods", "unknown", f"cannot read the Deployment: {deployment.error}")
    if deployment is None:
        return Finding(
            "pods",
            "broken",
            f"no Deployment {svc.namespace}/{svc.name}",
            "the controller creates it from the service ConfigMap (see the controller link)",
        )
    if isinstance(pods, Unreadable):
        return Finding("pods", "unknown", f"cannot list the pods: {pods.error}")
    events = [] if isinstance(svc.events, Unreadable) else svc.events
    nodes = None if isinstance(svc.nodes, Unreadable) else svc.nodes
    replicas = (deployment.get("spec") or {}).get("replicas")
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        if replicas == 0:
            return Finding("pods", "ok", "the Deployment is scaled to zero")
        failure = _condition(deployment, "ReplicaFailure")
        why = f": {failure.get('message')}" if failure else ""
        return Finding(
            "pods",
            "broken",
            f"the Deployment wants {replicas} replicas but has no pods{why}",
            f"`kubectl -n {svc.namespace} describe rs -l app.kubernetes.io/instance={svc.name}` (quota, "
            "admission webhooks)",
        )
    problems = [p for p in (diagnose_pod(pod, events, nodes) for pod in live) if p is not None]
    ready = sum(1 for p in live if _ready(p))
    running = len(_running(live))
    summary = f"{len(live)} pods, {running} Running, {ready} Ready"
    blocking = [p for p in problems if p.kind != "not-ready"]
    if not blocking and ready > 0:
        starting = f" ({len(problems)} starting)" if problems else ""
        return Finding("pods", "ok", summary + starting)
    first = (blocking or problems)[0]
    count = sum(1 for p in problems if p.kind == first.kind)
    seen = f"{summary}; {count} {'is' if count == 1 else 'are'} {first.kind}: {first.pod}: {first.detail}"
    if first.kind == "insufficient" and nodes is not None:
        seen += f" ({_capacity(nodes, first.subject)})"
    return Finding("pods", "broken", seen, _pod_fix(first))


def _capacity(nodes: Sequence[Obj], resources: str) -> str:
    parts = []
    for resource in resources.split(", "):
        total = 0
        holding = 0
        for node in nodes:
            raw = ((node.get("status") or {}).get("allocatable") or {}).get(resource)
            if raw is not None and str(raw).isdigit():
                total += int(raw)
                holding += 1 if int(raw) else 0
        parts.append(f"{len(nodes)} nodes, {holding} with {resource}, {total} allocatable in all")
    return "; ".join(parts)


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


def _newest(series: Sequence[SeriesSample]) -> float:
    return max(s.timestamp for s in series)


def check_series(svc: ServiceSnapshot) -> Finding:
    prom = svc.prometheus
    if isinstance(prom, Unreadable) or isinstance(prom.selected, Unreadable):
        return Finding("series", "unknown", "not reached: Prometheus cannot be queried")
    # A pod exports its series once its server is up, which is when it turns Ready.
    ready = [] if isinstance(svc.pods, Unreadable) else [p for p in _running(svc.pods) if _ready(p)]
    query = f"{prom.queue_series}{{{prom.matchers}}}"
    if not prom.selected:
        if not ready and not isinstance(svc.pods, Unreadable):
            return Finding(
                "series",
                "broken",
                f"no series {query}: no pod of the service is Ready (see the pods link)",
                "fix the pods first",
            )
        others = [] if isinstance(prom.in_namespace, Unreadable) else prom.in_namespace
        if others:
            shown = "; ".join(_labels_text(s.labels) for s in others[:3])
            return Finding(
                "series",
                "broken",
                f"no series {query}, but {len(others)} series of {prom.queue_series} in namespace "
                f"{svc.namespace} without the labels the HPA selects, e.g. {shown}",
                "the scrape must copy the pod labels onto the series: the rendered PodMonitor does; an "
                "annotation-based scrape job needs `labelmap: __meta_kubernetes_pod_label_(.+)` "
                "(README, Troubleshooting)",
            )
        return Finding(
            "series",
            "broken",
            f"no series {query}: Prometheus does not scrape the service's {len(ready)} Ready pods",
            "check Prometheus' targets page: the PodMonitor (or scrape annotations) must select the pods, "
            "and the Prometheus Operator's podMonitorSelector must select the PodMonitor",
        )
    pods_seen = {s.labels.get("pod", "") for s in prom.selected} - {""}
    age = max(0.0, svc.now - _newest(prom.selected))
    seen = (
        f"{len(prom.selected)} series {query} from {len(pods_seen)} pods "
        f"({len(ready)} pods Ready), newest sample {age:.0f}s old"
    )
    missing = sorted({str((p.get("metadata") or {}).get("name")) for p in ready} - pods_seen)
    if pods_seen and missing:
        return Finding(
            "series",
            "broken",
            f"{seen}; no series from Ready pod(s) {', '.join(missing[:5])}",
            "those pods are not scraped: check their /metrics port and Prometheus' targets page",
        )
    return Finding("series", "ok", seen)


# --- the HPA ----------------------------------------------------------------------------------


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A metav1.LabelSelector as the labelSelector query parameter the HPA controller sends."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or ():
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def hpa_external_metrics(hpa: Obj) -> list[tuple[str, str]]:
    """(metric name, labelSelector) of every External metric the HPA scales on."""
    found = []
    for metric in (hpa.get("spec") or {}).get("metrics") or ():
        if metric.get("type") == "External":
            ident = (metric.get("external") or {}).get("metric") or {}
            found.append((str(ident.get("name")), selector_string(ident.get("selector"))))
    return found


def check_hpa(svc: ServiceSnapshot) -> Finding:
    hpa = svc.hpa
    if isinstance(hpa, Unreadable):
        return Finding("hpa", "unknown", f"cannot read the HPA: {hpa.error}")
    if hpa is None:
        return Finding(
            "hpa",
            "broken",
            f"no HorizontalPodAutoscaler {svc.namespace}/{svc.name}",
            "the controller creates it from the service ConfigMap (see the controller link)",
        )
    metrics = hpa_external_metrics(hpa)
    if not metrics:
        return Finding(
            "hpa",
            "broken",
            "the HPA has no External metric: it does not scale on the queue or the demand",
            "let the controller own the HPA (autoscaling.signal in the service spec)",
        )
    for read in svc.metric_reads:
        # The adapter answers an unknown metric as kube-apiserver's NotFound does:
        # `externalmetricvaluelist.external.metrics.k8s.io "<metric>" not found`.
        unknown = "no external metric named" in read.message or (
            "externalmetricvaluelist" in read.message and read.message.endswith("not found")
        )
        if read.status == 404 and unknown:
            return Finding(
                "hpa",
                "broken",
                f"the HPA scales on {read.metric!r}, which the adapter does not serve ({read.message})",
                "use a metric the adapter serves (`kubectl get --raw "
                "/apis/external.metrics.k8s.io/v1beta1`), or define it in the adapter's metrics ConfigMap",
            )
    status = hpa.get("status") or {}
    facts = (
        f"{', '.join(m for m, _ in metrics)}; replicas {status.get('currentReplicas')} current / "
        f"{status.get('desiredReplicas')} desired, last scale {status.get('lastScaleTime') or 'never'}"
    )
    able = _condition(hpa, "AbleToScale")
    active = _condition(hpa, "ScalingActive")
    if able is None or active is None:
        return Finding(
            "hpa",
            "unknown",
            f"{facts}; the HPA controller has not reported its conditions yet",
            "wait one HPA sync (15 s by default); if it never reports, kube-controller-manager is not "
            "running",
        )
    for condition in (able, active):
        if condition.get("status") != "True":
            return Finding(
                "hpa",
                "broken",
                f"{condition['type']}=False {condition.get('reason')}: {condition.get('message')} ({facts})",
                "the links above say why the metric cannot be read"
                if condition.get("reason") == "FailedGetExternalMetric"
                else f"`kubectl -n {svc.namespace} describe hpa {svc.name}`",
            )
    return Finding("hpa", "ok", f"ScalingActive and AbleToScale; {facts}")


# --- what the service adds: alert rules, dashboard, the controller's status -------------------


def check_rules(svc: ServiceSnapshot) -> Finding:
    if not svc.rule_expected:
        return Finding("rules", "ok", "no PrometheusRule expected (alerts off, or no Prometheus Operator)")
    rule = svc.prometheus_rule
    if isinstance(rule, Unreadable):
        return Finding("rules", "unknown", f"cannot read the PrometheusRule: {rule.error}")
    if rule is None:
        return Finding(
            "rules",
            "broken",
            f"no PrometheusRule {svc.namespace}/{svc.name}",
            "the controller creates it when the Prometheus Operator's CRDs are installed (controller link)",
        )
    groups = {str(g.get("name")) for g in (rule.get("spec") or {}).get("groups") or ()}
    prom = svc.prometheus
    if isinstance(prom, Unreadable) or isinstance(prom.rule_groups, Unreadable):
        return Finding("rules", "unknown", "not reached: Prometheus' rules API cannot be read")
    missing = sorted(groups - prom.rule_groups)
    if missing:
        labels = (rule.get("metadata") or {}).get("labels") or {}
        return Finding(
            "rules",
            "broken",
            f"PrometheusRule {svc.namespace}/{svc.name} has {len(groups)} groups; Prometheus does not "
            f"evaluate {', '.join(missing)}",
            "the Prometheus Operator's ruleSelector and ruleNamespaceSelector must select it (its labels: "
            f"{_labels_text(labels)}); without the operator, add the rendered rules to rule_files",
        )
    return Finding("rules", "ok", f"Prometheus evaluates the {len(groups)} groups of the PrometheusRule")


def check_dashboard(svc: ServiceSnapshot) -> Finding:
    if svc.dashboard_ref is None:
        return Finding("dashboard", "ok", "no dashboard expected (dashboard.enabled is false)")
    ns, name = svc.dashboard_ref
    dashboard = svc.dashboard
    if isinstance(dashboard, Unreadable):
        return Finding("dashboard", "unknown", f"cannot read ConfigMap {ns}/{name}: {dashboard.error}")
    if dashboard is None:
        return Finding(
            "dashboard",
            "broken",
            f"no dashboard ConfigMap {ns}/{name}",
            "the controller writes it (controller link); the namespace must exist and the controller "
            "may write there",
        )
    labels = (dashboard.get("metadata") or {}).get("labels") or {}
    if labels.get(GRAFANA_DASHBOARD_LABEL) != GRAFANA_DASHBOARD_LABEL_VALUE:
        return Finding(
            "dashboard",
            "broken",
            f"ConfigMap {ns}/{name} lacks the label "
            f"{GRAFANA_DASHBOARD_LABEL}={GRAFANA_DASHBOARD_LABEL_VALUE}",
            "Grafana's sidecar only loads labelled ConfigMaps: let the controller re-apply it",
        )
    return Finding(
        "dashboard",
        "ok",
        f"ConfigMap {ns}/{name} with {GRAFANA_DASHBOARD_LABEL}={GRAFANA_DASHBOARD_LABEL_VALUE}",
    )


def check_controller(svc: ServiceSnapshot) -> Finding:
    cm = svc.configmap
    if isinstance(cm, Unreadable):
        return Finding("controller", "unknown", f"cannot read the service ConfigMap: {cm.error}")
    if cm is None:
        return Finding(
            "controller",
            "broken",
            f"no service ConfigMap {svc.namespace}/{svc.name}: the objects are not managed by tgi-autoscaler",
            f"create one labelled {LABEL_SERVICE_CONFIGMAP}={LABEL_SERVICE_CONFIGMAP_VALUE} with its spec "
            "under service.yaml (manifests/examples)",
        )
    if svc.spec_error is not None:
        return Finding(
            "controller", "broken", f"the spec is invalid: {svc.spec_error}", "fix the named field"
        )
    view = svc.controller
    if view is None or view.phase is None:
        return Finding(
            "controller",
            "broken",
            "no controller has processed the service ConfigMap (no status annotation)",
            "check the controller: `kubectl -n tgi-autoscaler logs deploy/tgi-autoscaler-controller`; it "
            "must watch this namespace",
        )
    seen = f"phase {view.phase}: {view.message}"
    if view.phase != "Ready":
        return Finding(
            "controller", "broken", seen, f"`kubectl -n {svc.namespace} describe configmap {svc.name}`"
        )
    if view.stale:
        return Finding(
            "controller",
            "unknown",
            seen + " (for an older spec: the latest edit is not processed yet)",
            "wait a moment; if it stays, the controller is not running",
        )
    return Finding("controller", "ok", seen)


def check_service(cluster: ClusterSnapshot, svc: ServiceSnapshot) -> list[Finding]:
    """Every link for one service, the cluster-wide ones included, in chain order."""
    service = f"{svc.namespace}/{svc.name}"
    findings = [
        check_apiservice(cluster),
        check_adapter(cluster, svc.metric_reads),
        check_prometheus(svc.metric_reads, svc.prometheus),
        check_pods(svc),
        check_series(svc),
        check_hpa(svc),
        check_rules(svc),
        check_dashboard(svc),
        check_controller(svc),
    ]
    return [Finding(f.link, f.status, f.seen, f.fix, service) for f in findings]
