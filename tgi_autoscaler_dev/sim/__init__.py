"""Simulated TGI servers and a load generator, for tests, the demo and benchmarks.

A :class:`Fleet` runs N replicas in one process, each a TGI-compatible HTTP server on its own
loopback port whose queue follows a continuous-batching model (:mod:`tgi_autoscaler_dev.sim.model`), and
publishes them to Prometheus through a file_sd file with pod-like labels. The load generator
(:func:`run_load`) replays traces (:mod:`tgi_autoscaler_dev.sim.traces`) against the fleet's front.
:class:`PodFollower` (:func:`following_pods`) makes a fleet follow the real pods of a Deployment.
"""

from tgi_autoscaler_dev.sim.balancer import Balancer
from tgi_autoscaler_dev.sim.fleet import Fleet, FleetSnapshot, SimulatedPod
from tgi_autoscaler_dev.sim.follow import PodFollower, following_pods, pod_state
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadReport, LoadSpec, ensure_loopback, run_load
from tgi_autoscaler_dev.sim.metrics import ENGINES, Engine
from tgi_autoscaler_dev.sim.model import ReplicaConfig, ReplicaModel, Snapshot
from tgi_autoscaler_dev.sim.server import ReplicaServer, ServedModel
from tgi_autoscaler_dev.sim.traces import (
    Constant,
    Diurnal,
    Spike,
    Step,
    Trace,
    arrival_times,
    parse_trace,
    trace_from_dict,
    trace_to_dict,
)

__all__ = [
    "ENGINES",
    "Balancer",
    "Constant",
    "Diurnal",
    "Engine",
    "Fleet",
    "FleetSnapshot",
    "LoadGenerator",
    "LoadReport",
    "LoadSpec",
    "PodFollower",
    "ReplicaConfig",
    "ReplicaModel",
    "ReplicaServer",
    "ServedModel",
    "SimulatedPod",
    "Snapshot",
    "Spike",
    "Step",
    "Trace",
    "arrival_times",
    "ensure_loopback",
    "following_pods",
    "parse_trace",
    "pod_state",
    "run_load",
    "trace_from_dict",
    "trace_to_dict",
]
