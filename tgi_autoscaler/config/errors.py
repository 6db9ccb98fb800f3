"""The one error type for invalid configuration: service specs, adapter documents, ``what-if`` input.

A document usually has several mistakes at once; reporting them one per apply is slow for the
person fixing them, so a ``ConfigError`` carries every issue found, each with the dotted path of the
offending key (``autoscaling.minReplicas``) and the rule it breaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue"]


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One broken rule: where (dotted camelCase key path, ``<root>`` for the document) and why."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """Invalid configuration; ``issues`` lists every problem found, in document order.

    ``what`` names the kind of document in the message (``service spec``, ``metrics configuration``).
    """

    def __init__(self, source: str, issues: Iterable[ConfigIssue], *, what: str = "service spec") -> None:
        self.source = source
        self.what = what
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        if not self.issues:
            raise ValueError("ConfigError needs at least one issue")
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        count = len(self.issues)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: invalid {what} ({count} {noun}):\n{lines}")
