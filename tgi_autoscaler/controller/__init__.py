"""The controller: one ConfigMap per TGI service becomes a running, autoscaled, monitored service.

It talks to the API server through :mod:`tgi_autoscaler.kube` (the client, the list-then-watch
loop, the retry policy), which it shares with the adapter. Its own layers, bottom up:
``resources`` (the kinds it manages), ``workqueue`` (what to reconcile next), ``apply`` (server-side
apply, ownership, drift fingerprints), ``reconciler`` (one service), ``leader`` (Lease election),
``manager`` (everything wired together), and the ``cli``/``status_cli`` commands.
"""
