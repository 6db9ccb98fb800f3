"""How fast ``backtest`` replays: an hour of 20 requests/s through ten policies, on one core.

The replay has to be cheap enough that an SRE runs every policy on a day of their own traffic
without thinking about it. This prints one row per policy (requests, wall seconds, requests
replayed per second) and the total, with the machine it ran on.

    .venv/bin/python bench/backtest_bench.py [--rate 20] [--minutes 60]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

from tgi_autoscaler.backtest.policies import BASELINES, Policy, Slo, demand_policy, resolve
from tgi_autoscaler.backtest.requests import TraceShape, shaped_trace
from tgi_autoscaler.backtest.run import RunConfig, replay
from tgi_autoscaler.servicemodel import ColdStart, ServerParams
from tgi_autoscaler.signals import DemandSignal


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=20.0, help="mean requests/s")
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    end = args.minutes * 60
    shape = TraceShape(
        base_rate=args.rate * 0.75, peak_rate=args.rate * 1.25, start=end / 4, duration=end / 2, end=end
    )
    trace = shaped_trace("diurnal", shape, seed=1)
    params = ServerParams()
    config = RunConfig(params, ColdStart(), max_replicas=20, initial_replicas=5)
    policies: list[Policy] = [
        demand_policy(),
        demand_policy("tgi-autoscaler +20%", headroom=0.2),
        demand_policy("demand w30 d60", demand=DemandSignal(30, 60)),
        demand_policy("demand w60 d120", demand=DemandSignal(60, 120)),
        *BASELINES,
    ]
    load = os.getloadavg()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {load[0]:.1f}/{load[1]:.1f}; "
        f"python {platform.python_version()}"
    )
    print(f"trace: {len(trace)} requests over {args.minutes:g} min (mean {trace.mean_rate:.1f} req/s)")
    print(f"{'policy':24} {'requests':>9} {'CPU s':>8} {'requests/s':>11}")
    total = 0.0
    slo = Slo()
    for policy in policies:
        resolved = resolve(
            policy,
            params,
            slo,
            prompt_tokens=trace.mean_prompt_tokens,
            output_tokens=trace.mean_output_tokens,
        )
        began = time.process_time()
        replay(trace, resolved, config)
        spent = time.process_time() - began
        total += spent
        print(f"{policy.name:24} {len(trace):9d} {spent:8.2f} {len(trace) / spent:11.0f}")
    print(f"{'all ' + str(len(policies)) + ' policies':24} {len(trace) * len(policies):9d} {total:8.2f}")


if __name__ == "__main__":
    main()
