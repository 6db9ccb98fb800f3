"""The activator: a small proxy in front of a service that scales to zero.

With zero replicas there is no server queue to read, so the requests that should wake the service
must wait somewhere they can be counted. The activator holds them while no replica is Ready
(bounded by a count and a wait, then 503 with ``Retry-After``), exports how many it holds (the
adapter adds them to the service's demand signal, so the HPA goes 0 -> 1, or more for a large
burst), then forwards them and streams the responses (server-sent events included) unchanged.

``gate`` is the holding logic, ``proxy`` the aiohttp server, ``cli`` the ``tgi-autoscaler
activator`` subcommand. It reads nothing from the Kubernetes API: readiness is the upstream
Service answering its health path, which is what a client would see.
"""
