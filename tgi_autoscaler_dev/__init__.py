"""The development harness: everything the tests, the demo and the benchmarks run beside the product,
and nothing the product needs.

``localstack`` builds etcd, kube-apiserver, kube-controller-manager (and the peers the tests use)
from their published Go modules and runs them with Debian's Prometheus; ``sim`` is a TGI-faithful
simulator (TGI's HTTP API and the engines' real metric names) whose step times come from the
runtime's service model, plus a load generator; ``demo`` runs the whole loop. The runtime package
(``tgi_autoscaler``) never imports this one (an import-linter contract), and neither the wheel nor
the image contains it: ``scripts/setup.sh`` puts the checkout on the virtualenv's path instead.
Run it as ``python -m tgi_autoscaler_dev {simulate,localstack,demo}``.
"""
