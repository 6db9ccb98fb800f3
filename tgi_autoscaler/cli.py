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

# (subcommand, module providing ``register(subparsers)``). The module's parser sets ``func``.
SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("adapter", "tgi_autoscaler.adapter.cli"),
    ("controller", "tgi_autoscaler.controller.cli"),
    ("render", "tgi_autoscaler.render.cli"),
    ("status", "tgi_autoscaler.controller.status_cli"),
    ("simulate", "tgi_autoscaler.sim.cli"),
    ("localstack", "tgi_autoscaler.localstack.cli"),
    ("demo", "tgi_autoscaler.demo"),
    ("docs", "tgi_autoscaler.config.docs"),
    ("what-if", "tgi_autoscaler.hpa.cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgi-autoscaler",
        description="Queue-depth autoscaling for LLM servers on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    parser.add_argument("--log-level", default="INFO")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, module_name in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith("tgi_autoscaler"):
                continue  # subcommand not part of this build
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
