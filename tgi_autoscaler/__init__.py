"""tgi-autoscaler: scale LLM servers on Kubernetes on the number of waiting requests.

Two servers share this package: an external metrics adapter (``tgi_autoscaler.adapter``) that serves
queue depth from Prometheus to the HorizontalPodAutoscaler, and a controller
(``tgi_autoscaler.controller``) that turns one ConfigMap per service into a Deployment, HPA,
alerts and a dashboard. Both derive what they do from the typed models in ``tgi_autoscaler.config``.
"""

__version__ = "0.1.0"
