"""Kept for old imports: ranking lives in ``engine.mechanics.ranking``."""
from __future__ import annotations

from .mechanics.ranking import Placed, RankResult, rank

__all__ = ["Placed", "RankResult", "rank"]
