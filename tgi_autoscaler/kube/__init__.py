"""The Kubernetes access layer both servers stand on: one client, one error model, one watch loop.

Why it exists: the adapter and the controller both talk to kube-apiserver, and must not depend on
each other. What they share lives here, once:

- ``connect``: building an API client (explicit kubeconfig, else in-cluster, else ``$KUBECONFIG``);
- ``client``: the typed raw client (``KubeClient`` protocol, ``ApiKubeClient`` on plain JSON dicts);
- ``errors``: ``ApiError`` (status, reason, message, causes, Retry-After) and ``TransportError``;
- ``resources``: resource types and their REST paths;
- ``retry``: the retry policy as data (``Backoff``, ``RetryPolicy``);
- ``watch``: the one list-then-watch loop (``Reflector``: resume from resourceVersion, bookmarks,
  relist on 410 Gone, backoff), configured by a ``WatchPolicy`` value.

What it may import: kubernetes_asyncio, aiohttp, structlog and the standard library. Never the
adapter, the controller or the test harness; import-linter checks this (``lint-imports``).
"""
