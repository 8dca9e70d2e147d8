"""Ranking a round's cases and handing out places by quota, never breaking a tie silently."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .spec import RankingSpec


@dataclass
class Placed:
    case_id: int
    title: str
    key: tuple[Any, ...]
    rank: int
    level: str | None
    tied_with: list[int] = field(default_factory=list)


@dataclass
class RankResult:
    placed: list[Placed]
    ties: list[dict[str, Any]]           # {"level": id, "cases": [ids], "resolved": "refuse"|"include"|"exclude"}

    @property
    def blocking_ties(self) -> list[dict[str, Any]]:
        return [t for t in self.ties if t["resolved"] == "refuse"]


def _sortable(value: Any, order: str) -> tuple[int, Any]:
    """Missing values rank last in either order; numbers negate for descending order."""
    if value is None:
        return (1, 0)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, -value if order == "desc" else value)
    return (0, value)  # text sorts ascending only; declare order: asc for text keys


def rank(spec: RankingSpec, cases: list[Any], context: Callable[[Any], dict[str, Any]]) -> RankResult:
    """Order ``cases`` by ``spec.by`` and the tie-break rules, then fill the levels' quotas in order."""
    entries = []
    for case in cases:
        ctx = context(case)
        key = (_sortable(spec.by.evaluate(ctx), spec.order),) + tuple(
            _sortable(expr.evaluate(ctx), order) for expr, order in spec.tie_break)
        entries.append((key, case))
    entries.sort(key=lambda e: (e[0], e[1].id))
    placed: list[Placed] = []
    ties: list[dict[str, Any]] = []
    level_of: dict[int, str | None] = {}
    i = 0
    for level in spec.levels:
        end = min(i + level.quota, len(entries))
        if 0 < end < len(entries) and end > i and entries[end - 1][0] == entries[end][0]:
            key = entries[end - 1][0]
            block = [j for j in range(i, len(entries)) if entries[j][0] == key]
            ties.append({"level": level.id, "cases": [entries[j][1].id for j in block], "resolved": spec.on_tie})
            if spec.on_tie == "include":
                end = block[-1] + 1
            elif spec.on_tie == "exclude":
                end = block[0]
        for j in range(i, end):
            level_of[entries[j][1].id] = level.id
        i = end
    position = 0
    previous = None
    for n, (key, case) in enumerate(entries):
        if key != previous:
            position = n + 1
            previous = key
        tied = [e[1].id for e in entries if e[0] == key and e[1].id != case.id]
        placed.append(Placed(case.id, case.title, key, position, level_of.get(case.id), tied))
    return RankResult(placed, ties)
