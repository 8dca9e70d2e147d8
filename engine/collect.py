"""Kept for old imports: the aggregation of contributions lives in ``engine.mechanics.collect``."""
from __future__ import annotations

from .mechanics.collect import AggregateSpec, aggregate, combine, sheet_score

__all__ = ["AggregateSpec", "aggregate", "combine", "sheet_score"]
