"""The figures of one outcome (real or replayed): wait percentiles, SLA attainment, abandonment, load, fairness."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence

from service.simulator.engine import Outcome
from service.simulator.schemas import Figures, OperatorFigures, Waits

SECONDS_DIGITS = 3
SHARE_DIGITS = 4


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's ``percentile_cont`` (analytics uses it)."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def jain_index(values: Sequence[float]) -> float | None:
    """Jain's fairness index (Σx)² / (n·Σx²): 1 when all are equal, 1/n when one has everything; None if all 0."""
    squares = sum(x * x for x in values)
    if not values or squares == 0:
        return None
    return round(sum(values) ** 2 / (len(values) * squares), SHARE_DIGITS)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def waits(outcome: Outcome) -> Waits:
    """Wait percentiles over the served conversations."""
    ordered = sorted(s.wait_seconds for s in outcome.served)
    return Waits(
        answered=len(ordered),
        average_seconds=_round(math.fsum(ordered) / len(ordered), SECONDS_DIGITS) if ordered else None,
        p50_seconds=_round(percentile(ordered, 0.5), SECONDS_DIGITS),
        p90_seconds=_round(percentile(ordered, 0.9), SECONDS_DIGITS),
        p99_seconds=_round(percentile(ordered, 0.99), SECONDS_DIGITS),
    )


def figures(
    outcome: Outcome,
    arrivals: int,
    target_seconds: int | None,
    capacities: Mapping[uuid.UUID, int | None],
    names: Mapping[uuid.UUID, str],
) -> Figures:
    """``capacities`` lists the operators to show (in order) with the capacity their load is measured against."""
    given = Counter(s.operator_id for s in outcome.served)
    rows = [
        OperatorFigures(
            operator_id=operator_id,
            display_name=names.get(operator_id, str(operator_id)),
            assignments=given[operator_id],
            capacity=capacity,
            assignments_per_slot=round(given[operator_id] / capacity, SHARE_DIGITS) if capacity else None,
        )
        for operator_id, capacity in capacities.items()
    ]
    per_slot = [given[op] / capacity for op, capacity in capacities.items() if capacity]
    within = None
    if target_seconds is not None and arrivals:
        within = round(sum(1 for s in outcome.served if s.wait_seconds <= target_seconds) / arrivals, SHARE_DIGITS)
    return Figures(
        arrivals=arrivals,
        waits=waits(outcome),
        sla_attainment=within,
        abandoned=len(outcome.abandoned),
        abandonment_rate=round(len(outcome.abandoned) / arrivals, SHARE_DIGITS) if arrivals else None,
        unanswered=len(outcome.unanswered),
        operators=rows,
        jain_index=jain_index(per_slot),
    )
