"""What the simulator's per-engine metric families cost: model events per CPU second, and the CPU
time of one ``/metrics`` exposition per engine.

A simulated replica records each request for TGI and for the engine it impersonates
(``sim.families``); this prints what recording vLLM's and SGLang's families costs, next to the
same model recording TGI's alone.

    .venv/bin/python bench/sim_metrics_bench.py --requests 20000
"""

from __future__ import annotations

import argparse
import time

from tgi_autoscaler_dev.sim.metrics import ENGINES, ReplicaCollector, build_registry, render_text
from tgi_autoscaler_dev.sim.model import GenerationRequest, ReplicaConfig, ReplicaModel


def _replay(requests: int, *, with_engines: bool) -> tuple[ReplicaModel, float]:
    config = ReplicaConfig(max_batch_size=16, max_concurrent_requests=requests + 1)
    model = ReplicaModel(config, now=0.0, record_for=("vllm", "sglang") if with_engines else ())
    start = time.process_time()
    for i in range(requests):
        # 10 requests/s of 20 tokens each: the batch stays busy, steps are many.
        model.submit(GenerationRequest(input_tokens=100, max_new_tokens=20), now=i / 10.0)
        model.poll(i / 10.0)
    model.poll(requests / 10.0 + 3600.0)
    return model, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    if args.requests < 1 or args.scrapes < 1:
        parser.error("--requests and --scrapes: must be >= 1")

    model, cpu = _replay(args.requests, with_engines=True)
    _, cpu_tgi_only = _replay(args.requests, with_engines=False)
    print("| recorded for | requests | CPU s | requests per CPU s |")
    print("| --- | --- | --- | --- |")
    print(f"| TGI, vLLM, SGLang | {args.requests} | {cpu:.2f} | {args.requests / cpu:,.0f} |")
    print(f"| TGI only | {args.requests} | {cpu_tgi_only:.2f} | {args.requests / cpu_tgi_only:,.0f} |")
    print()
    print("| /metrics as | bytes | CPU ms per exposition |")
    print("| --- | --- | --- |")
    for engine in ENGINES:
        registry = build_registry(ReplicaCollector(model, engine=engine))
        start = time.process_time()
        for _ in range(args.scrapes):
            text = render_text(registry)
        per = (time.process_time() - start) / args.scrapes * 1000
        print(f"| {engine} | {len(text):,} | {per:.2f} |")


if __name__ == "__main__":
    main()
