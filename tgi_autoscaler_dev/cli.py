"""``python -m tgi_autoscaler_dev``: the harness's subcommands, with the runtime CLI's lazy registry."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from tgi_autoscaler.cli import Subcommand, main

__all__ = ["SUBCOMMANDS", "run"]

SUBCOMMANDS: tuple[Subcommand, ...] = (
    ("simulate", "tgi_autoscaler_dev.sim.cli", "run simulated TGI replicas on loopback"),
    (
        "localstack",
        "tgi_autoscaler_dev.localstack.cli",
        "build or run the local control plane and Prometheus",
    ),
    ("demo", "tgi_autoscaler_dev.demo", "run the whole autoscaling loop locally and plot it"),
    ("chart", "tgi_autoscaler_dev.chart", "generate the Helm chart's values, schema and README"),
)


def run(argv: Sequence[str] | None = None) -> int:
    return main(argv, subcommands=SUBCOMMANDS, prog="python -m tgi_autoscaler_dev")


if __name__ == "__main__":
    sys.exit(run())
