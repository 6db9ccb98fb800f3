"""Replays of traffic under scaling policies: the pure replay, its inputs (traces, a service's
Prometheus history) and the ``backtest`` command (``cli``, the edge with ``history``)."""
