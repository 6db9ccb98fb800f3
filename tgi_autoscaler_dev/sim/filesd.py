"""Atomic Prometheus file_sd files.

Prometheus watches the file_sd directory with inotify and may read a file while it is being
written; a half-written JSON file makes it drop the targets until the next change. Writing to a
temporary name that the ``*.json`` glob does not match and renaming it into place avoids that.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["remove_file_sd", "write_file_sd"]


def write_file_sd(path: Path, groups: Sequence[dict[str, Any]]) -> None:
    """Replace ``path`` with ``groups`` in one rename (readers see the old or the new list)."""
    if path.suffix != ".json":
        raise ValueError(f"file_sd path {path}: must end in .json to be picked up by Prometheus")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(list(groups), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def remove_file_sd(path: Path) -> None:
    path.unlink(missing_ok=True)
