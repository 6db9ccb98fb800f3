"""Prometheus results turned into answers: a definition's value with the time of the data behind it.

The query's own result is stamped with the evaluation time; the time of the data comes from the
``timestamp()`` part built by ``tgi_autoscaler.promql.shape`` (the oldest of the newest samples
behind the value). Three forms arrive here, all pure to read:

- ``from_combined``: value and timestamp parts of one query, for one selector;
- ``from_pair``: a value query and a separate timestamp query (templates that are not plain
  aggregations, whose value may be a scalar);
- ``by_group``: the grouped form, one answer per combination of the grouping labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tgi_autoscaler.adapter.prometheus import InstantResult
from tgi_autoscaler.promql.shape import PART_LABEL, PART_TIMESTAMP, PART_VALUE

__all__ = ["Answer", "by_group", "from_combined", "from_pair"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a read gets: the values (normally one; none when nothing matched) and their data time."""

    values: tuple[str, ...]
    data_time: float | None  # Unix seconds of the oldest newest sample behind the value
    evaluated_at: float
    result_type: str = "vector"


def _data_time(result: InstantResult) -> float | None:
    times: list[float] = []
    for sample in result.samples:
        try:
            times.append(float(sample.value))
        except ValueError:
            continue
    return min(times) if times else None


def from_pair(value: InstantResult, age: InstantResult | None) -> Answer:
    """A value query's result and its separate ``timestamp()`` query's (None if not sent)."""
    return Answer(
        values=tuple(sample.value for sample in value.samples),
        data_time=None if age is None else _data_time(age),
        evaluated_at=value.evaluated_at,
        result_type=value.result_type,
    )


def from_combined(result: InstantResult) -> Answer:
    """One query holding the value series and the timestamp series, told apart by ``PART_LABEL``."""
    values: list[str] = []
    data_time: float | None = None
    for sample in result.samples:
        part = sample.labels.get(PART_LABEL)
        if part == PART_VALUE:
            values.append(sample.value)
        elif part == PART_TIMESTAMP:
            stamp = float(sample.value)
            data_time = stamp if data_time is None else min(data_time, stamp)
    return Answer(values=tuple(values), data_time=data_time, evaluated_at=result.evaluated_at)


def by_group(result: InstantResult, labels: Sequence[str]) -> dict[tuple[str, ...], Answer]:
    """The grouped combined query's answers, keyed by the values of ``labels`` (in that order)."""
    values: dict[tuple[str, ...], list[str]] = {}
    times: dict[tuple[str, ...], float] = {}
    for sample in result.samples:
        key = tuple(sample.labels.get(label, "") for label in labels)
        part = sample.labels.get(PART_LABEL)
        if part == PART_VALUE:
            values.setdefault(key, []).append(sample.value)
        elif part == PART_TIMESTAMP:
            stamp = float(sample.value)
            times[key] = min(times.get(key, stamp), stamp)
    evaluated_at = result.evaluated_at
    # A group may have a data time and no value (a rate() over samples older than its window).
    return {
        key: Answer(values=tuple(values.get(key, ())), data_time=times.get(key), evaluated_at=evaluated_at)
        for key in values.keys() | times.keys()
    }
