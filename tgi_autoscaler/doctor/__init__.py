"""``tgi-autoscaler doctor``: walk the chain from the TGI pods to the HPA and name the first broken link.

Why it exists: when the HPA shows ``<unknown>`` the cause sits in one of a dozen places (the
APIService owned by another adapter, the adapter down or cut off from Prometheus, series without
the label the HPA selects, pods that cannot get a GPU, ...), each found with a different ``kubectl``
or PromQL incantation. ``doctor`` reads them all and says which link is broken, what it saw and
the fix.

How it is built: ``snapshot`` holds typed snapshots of everything read (Kubernetes objects as the
API returns them, Prometheus answers, the aggregated metric reads), ``checks`` and ``pods`` are
pure functions from a snapshot to findings, ``report`` renders findings as a table or JSON and
picks the exit code, and ``collect`` (the only module doing I/O, through ``tgi_autoscaler.kube``
and Prometheus' HTTP API) fills the snapshot. ``cli`` is the subcommand.
"""
