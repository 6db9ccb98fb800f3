"""The test suite's fixtures (Prometheus, the local control plane, a namespace per test, the leaked-
task check) for the equivalence check that ``bench/compare_prometheus_adapter.py`` runs after it has
built prometheus-adapter; the check lives here, not under ``tests/``, because only the benchmark
builds that binary."""

from tests.conftest import *  # noqa: F403
