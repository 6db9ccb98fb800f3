"""The local stack: a real Kubernetes control plane and Prometheus on loopback, built from source.

Why it exists: the adapter and the controller are only proven by running them against the real
servers they talk to (aggregation layer, RBAC, server-side apply, the HPA controller, the query
engine), and the tests, the demo and the benchmarks must do that on one machine without a cluster,
container images or pre-built downloads. This package builds what is needed from published Go
modules and runs it as supervised child processes.

What is in it: ``binaries`` and ``gobuild`` (pinned versions, built once into a per-version cache),
``pki`` (the cluster and front-proxy CAs and certificates), ``process`` (supervised processes and
readiness polling), ``controlplane`` (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler), ``kwok`` (fake GPU nodes and the pod lifecycle, in place of kubelets),
``aggregation`` (registering an APIService served by a local process), ``prometheus`` (Debian's
Prometheus, configured for fast feedback), ``crds`` (prometheus-operator's CRDs generated from its
Go types), ``kube_state_metrics`` and ``prometheus_adapter`` (the reference adapter, for the
comparison benchmark), and ``cli`` (``python -m tgi_autoscaler_dev localstack build|up``).

What it may import: the standard library and I/O libraries only, no other part of the project, so
the harness cannot hide a bug in what it tests. The servers must never import it (an import-linter
contract): it is for tests, the demo and the benchmarks.
"""
