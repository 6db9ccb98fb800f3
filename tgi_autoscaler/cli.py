"""The ``tgi-autoscaler`` command line.

Each subcommand lives with the code it drives and registers itself through a ``register(subparsers)``
function; this module only lists them, so importing the CLI does not import every server.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from tgi_autoscaler import __version__
from tgi_autoscaler.log import configure_logging

# (subcommand, module providing ``register(subparsers)``, one-line help). The module's parser sets
# ``func``. Only the module of the subcommand being run is imported: the servers' dependencies
# (kubernetes_asyncio alone takes a second) are not paid by ``render`` or ``--help``.
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("adapter", "tgi_autoscaler.adapter.cli", "serve external.metrics.k8s.io from Prometheus"),
    ("controller", "tgi_autoscaler.controller.cli", "turn service ConfigMaps into running services"),
    ("activator", "tgi_autoscaler.activator.cli", "hold requests to a scaled-to-zero service until it wakes"),
    ("render", "tgi_autoscaler.render.cli", "print the Kubernetes objects of a service (offline)"),
    ("status", "tgi_autoscaler.controller.status_cli", "show every service's phase and replicas"),
    ("doctor", "tgi_autoscaler.doctor.cli", "check the chain from the pods to the HPA, name the broken link"),
    ("docs", "tgi_autoscaler.config.docs", "generate docs/configuration.md from the service spec"),
    ("backtest", "tgi_autoscaler.backtest.cli", "compare scaling policies on real traffic: GPU-hours, SLO"),
)


Subcommand = tuple[str, str, str]


def _requested(argv: Sequence[str], subcommands: Sequence[Subcommand]) -> str | None:
    """The subcommand named on the command line, if any (global options come before it)."""
    names = {name for name, _, _ in subcommands}
    for token in argv:
        if token in names:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(
    argv: Sequence[str] | None = None,
    *,
    subcommands: Sequence[Subcommand] = SUBCOMMANDS,
    prog: str = "tgi-autoscaler",
    description: str = "Autoscaling for LLM servers on Kubernetes, on the signal that matters.",
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    parser.add_argument("--log-level", default="INFO")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _requested(sys.argv[1:] if argv is None else argv, subcommands)
    for name, module_name, help_text in subcommands:
        if wanted is not None and name != wanted:
            subparsers.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    subcommands: Sequence[Subcommand] = SUBCOMMANDS,
    prog: str = "tgi-autoscaler",
) -> int:
    parser = build_parser(argv, subcommands=subcommands, prog=prog)
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
