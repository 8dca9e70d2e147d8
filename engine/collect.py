"""Many contributors on one case: combining score sheets, ratings and votes into one result.

Pure functions over stored contributions (``{username: {"data": ..., "roles": [...]}}``);
the engine stores the result in the case data under ``aggregate.into``.
"""
from __future__ import annotations

from statistics import mean
from typing import Any, Mapping

from .spec import AggregateSpec


def sheet_score(spec: AggregateSpec, data: Mapping[str, Any]) -> float | None:
    """One contributor's score: a single field, or the weighted mean of the criteria."""
    if spec.score_field:
        value = data.get(spec.score_field)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if spec.criteria:
        total = weight = 0.0
        for name, w in spec.criteria.items():
            value = data.get(name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            total += w * value
            weight += w
        return total / weight if weight else None
    return None


def combine(method: str, scores: list[tuple[float, float]]) -> float | None:
    """Combine (score, weight) pairs: mean | sum | trimmed_mean | weighted_mean."""
    if not scores:
        return None
    values = [s for s, _ in scores]
    if method == "sum":
        return sum(values)
    if method == "trimmed_mean":
        if len(values) >= 3:  # drop one highest and one lowest
            values = sorted(values)[1:-1]
        return mean(values)
    if method == "weighted_mean":
        weight = sum(w for _, w in scores)
        return sum(s * w for s, w in scores) / weight if weight else None
    return mean(values)


def aggregate(spec: AggregateSpec, contributions: Mapping[str, Mapping[str, Any]], needed: int) -> dict[str, Any]:
    """The result stored in the case: ``total``, ``count``, ``needed``, ``complete``, per-criterion means, tallies."""
    scores: list[tuple[float, float]] = []
    for contribution in contributions.values():
        score = sheet_score(spec, contribution["data"])
        if score is not None:
            weight = max((spec.role_weights.get(r, 0) for r in contribution.get("roles", [])), default=0) or 1
            scores.append((score, float(weight)))
    total = combine(spec.method, scores)
    result: dict[str, Any] = {
        "total": round(total, 2) if total is not None else None,
        "count": len(contributions),
        "needed": needed,
        "complete": len(contributions) >= needed,
        "method": spec.method,
    }
    if spec.criteria:
        result["criteria"] = {
            name: round(mean(c["data"][name] for c in contributions.values() if isinstance(c["data"].get(name), (int, float))), 2)
            for name in spec.criteria
            if any(isinstance(c["data"].get(name), (int, float)) for c in contributions.values())
        }
    if spec.tally:
        tally: dict[str, int] = {}
        for contribution in contributions.values():
            value = contribution["data"].get(spec.tally)
            for v in value if isinstance(value, list) else [value]:
                if v is not None:
                    key = str(v).lower() if isinstance(v, bool) else str(v)
                    tally[key] = tally.get(key, 0) + 1
        result["tally"] = tally
    return result
