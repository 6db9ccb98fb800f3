"""The service model: how an LLM server turns arriving requests into first tokens, and how a
Deployment of them grows and shrinks.

One model serves two users. ``backtest`` replays hours of production traffic through it under many
scaling policies, so it must be fast (event-skipping: a run of decode steps with an unchanged batch
is one event) and exact about what matters to an autoscaler: when a request waits, when its first
token comes, how many requests sit in the queue at a scrape. The parameters are shared with the
live simulator (``tgi_autoscaler_dev.sim``), so the simulated pods behind the real HPA and the offline
replay answer the same question the same way.

Pure: no clock, no I/O; time is passed in.
"""

from tgi_autoscaler.servicemodel.params import (
    DEFAULT_COLD_START,
    DEFAULT_SERVER,
    ColdStart,
    ServerParams,
)
from tgi_autoscaler.servicemodel.replica import Replica, RequestLog
from tgi_autoscaler.servicemodel.service import PodPhase, Service, ServiceCounters

__all__ = [
    "DEFAULT_COLD_START",
    "DEFAULT_SERVER",
    "ColdStart",
    "PodPhase",
    "Replica",
    "RequestLog",
    "ServerParams",
    "Service",
    "ServiceCounters",
]
