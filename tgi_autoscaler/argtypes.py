"""argparse value types shared by the servers' command lines.

Each names the bound in its error, so a bad flag reads ``--port: must be a TCP port 0-65535 (got
70000)`` in every subcommand alike.
"""

from __future__ import annotations

import argparse

__all__ = ["non_negative", "port", "positive", "positive_int"]


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {text})")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {text})")
    return value


def port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port 0-65535 (got {text})")
    return value
