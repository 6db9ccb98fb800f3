"""The controller: one ConfigMap per TGI service becomes a running, autoscaled, monitored service.

Layers, bottom up: ``kube`` (typed raw API client), ``watch`` (list-then-watch caches),
``workqueue`` and ``retry`` (what to reconcile next, and when to try again), ``apply`` (server-side
apply, ownership, drift fingerprints), ``reconciler`` (one service), ``leader`` (Lease election),
``manager`` (everything wired together), and the ``cli``/``status_cli`` commands.
"""
