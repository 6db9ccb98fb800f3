"""Backtests of scaling policies: what each would have cost in GPU-hours and given in SLO attainment
on real traffic, next to a hindsight oracle.

A replay runs a request trace (``requests``) through the service model
(``tgi_autoscaler.servicemodel``), the metrics pipeline as Prometheus computes it (``scrape``,
``signals``) and a policy (``policies``: the real HPA algorithm on a signal, or Knative-style
windows), in ``run``; ``oracle`` finds the cheapest schedule that meets the SLO knowing the whole
trace; ``summary``, ``report`` and ``plot`` turn runs into numbers, tables and pictures; ``study``
runs several policies on one trace, ``docs`` regenerates the study in docs/scaling-behavior.md, and
``cli`` is the ``tgi-autoscaler backtest`` command. Everything but ``cli``, ``docs``, ``plot`` (and
the Prometheus history import) is pure: no clock, no I/O.
"""
