"""The external metrics adapter: ``external.metrics.k8s.io/v1beta1`` served from Prometheus.

Why it exists: the HorizontalPodAutoscaler can scale on a number it does not compute itself only
through an API that kube-apiserver's aggregation layer proxies to an extension server. This
package is that server, for queue depth: the HPA asks for ``tgi_queue_size`` (or vLLM's, or
SGLang's) in a namespace with a label selector, and gets the value of a PromQL query scoped to
exactly that namespace and selector.

What is in it, outermost first:

- ``cli`` (flags) and ``server`` (process wiring: TLS, background watches, graceful shutdown);
- the security layer, as the generic Kubernetes API server does it: ``tls`` (serving certificate,
  front-proxy client CA), ``requestheader`` (the aggregator's identity headers, from
  ``kube-system/extension-apiserver-authentication``), ``authn`` (TokenReview), ``authz``
  (SubjectAccessReview), ``security`` (the middleware), ``cache`` (short-lived review answers);
- the API itself: ``app``, ``handlers``, ``handlers_discovery``, ``discovery``, ``openapi``,
  ``status`` and ``errors`` (Kubernetes ``Status`` bodies);
- the data: ``definitions`` (which metrics are served, reloaded from a file or a ConfigMap through
  ``configmap_watch``), ``prometheus`` (the query client), ``own_metrics`` (its ``/metrics``).

What it may import: the pure core (``tgi_autoscaler.config``, ``tgi_autoscaler.promql``) and the
Kubernetes access layer (``tgi_autoscaler.kube``). Never the controller (the two are independent
servers) nor the test harness (``localstack``, ``sim``); import-linter checks both.
"""
