"""Findings as a table or JSON, and the exit code: 0 healthy, 1 a link is broken, 2 could not check.

Pure. "Could not check" wins over "healthy" but not over "broken": one broken link is a finding
whatever else could not be read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tgi_autoscaler.doctor.checks import Finding, first_broken

__all__ = ["EXIT_BROKEN", "EXIT_HEALTHY", "EXIT_UNKNOWN", "exit_code", "format_json", "format_table"]

EXIT_HEALTHY = 0
EXIT_BROKEN = 1
EXIT_UNKNOWN = 2
_SHOWN = {"ok": "ok", "broken": "BROKEN", "unknown": "unknown"}


def exit_code(findings: Sequence[Finding]) -> int:
    if any(f.status == "broken" for f in findings):
        return EXIT_BROKEN
    if any(f.status == "unknown" for f in findings) or not findings:
        return EXIT_UNKNOWN
    return EXIT_HEALTHY


def _by_service(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        grouped.setdefault(finding.service, []).append(finding)
    return grouped


def format_table(findings: Sequence[Finding]) -> str:
    """One block per service: a ``LINK STATUS SEEN`` row per link, the fix under each broken one,
    then the first broken link."""
    lines: list[str] = []
    for service, group in _by_service(findings).items():
        lines.append(f"service {service or '(cluster)'}")
        width = max(len(f.link) for f in group)
        for finding in group:
            lines.append(f"  {finding.link.ljust(width)}  {_SHOWN[finding.status].ljust(7)}  {finding.seen}")
            if finding.status != "ok" and finding.fix:
                lines.append(f"  {''.ljust(width)}  {''.ljust(7)}  fix: {finding.fix}")
        first = first_broken(group)
        if first is not None:
            lines.append(f"first broken link: {first.link}: {first.seen}")
        elif any(f.status == "unknown" for f in group):
            lines.append("no broken link found, but some links could not be checked")
        else:
            lines.append("healthy: every link checked is ok")
        lines.append("")
    return "\n".join(lines)


def format_json(findings: Sequence[Finding]) -> str:
    services: list[dict[str, Any]] = []
    for service, group in _by_service(findings).items():
        first = first_broken(group)
        services.append(
            {
                "service": service,
                "exitCode": exit_code(group),
                "firstBroken": None if first is None else first.link,
                "findings": [asdict(f) for f in group],
            }
        )
    return json.dumps({"exitCode": exit_code(findings), "services": services}, indent=2)
