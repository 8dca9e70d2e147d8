"""Rounds and ranking: cases belong to a round by start date; closing a round ranks the cases waiting in
``ranking.state`` and hands out places by quota, never breaking a tie silently; each ranked case then moves
along a ``ranking`` edge to ``selected`` or ``rest``.

Holds the specs (:class:`RankingSpec`, :class:`LevelSpec`), their load-time check (:func:`build`), the pure
ranking (:func:`rank`), :func:`round_of`, the ranking edge kind (:class:`Outcome`, used by the one transition
path) and :class:`RankingMixin` (the Engine's ``rounds``, ``ranking``, ``can_rank``, ``round_closed``,
``close_round``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .. import readmodel
from .. import transition as moves
from ..cases import CASES
from ..clock import iso
from ..errors import NotAllowed, NotFound, TransitionError
from ..expressions import Expression
from ..loadkit import GUARD_NAMES, did_you_mean, msg, text
from ..spec import PSEUDO_ROLES, Text, tr
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import EdgeSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

ROUNDS = readmodel.ROUNDS
#: The history label of a ranking move (the edges' own labels name the outcome for the diagram).
CLOSED_LABEL: Text = {"zh": "确定排名", "en": "Ranking closed"}


@dataclass(frozen=True)
class LevelSpec:
    id: str
    label: Text
    quota: int


@dataclass(frozen=True)
class RankingSpec:
    """When a round closes, cases waiting in ``state`` are ranked by ``by`` and the top ``quota`` of each
    level (in order) move to ``selected``, the rest to ``rest``. Ties left after ``tie_break`` are never
    resolved silently: ``on_tie`` says refuse (default: closing is refused, naming the tied cases),
    include (all tied cases get the place) or exclude (none of them does)."""

    state: str
    by: Expression
    levels: tuple[LevelSpec, ...]
    selected: str
    rest: str
    roles: tuple[str, ...]
    into: str = "award_level"
    order: str = "desc"
    tie_break: tuple[tuple[Expression, str], ...] = ()
    on_tie: str = "refuse"


def round_of(period: str | None, moment: dt.datetime) -> str | None:
    """The round a case started at ``moment`` belongs to: 2026-11, 2026-Q4, 2026-H2 or 2026."""
    if period is None:
        return None
    if period == "month":
        return f"{moment.year}-{moment.month:02d}"
    if period == "quarter":
        return f"{moment.year}-Q{(moment.month - 1) // 3 + 1}"
    if period == "half":
        return f"{moment.year}-H{1 if moment.month <= 6 else 2}"
    return str(moment.year)


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", raw: dict | None, states: dict, wf_roles: set[str],
          data_names: set[str]) -> RankingSpec | None:
    if raw is None:
        return None
    path: list[PathItem] = ["ranking"]
    for key in ("state", "selected", "rest"):
        if raw[key] not in states:
            ld.problems.append(source.problem(path + [key], f"unknown state {raw[key]!r}", did_you_mean(raw[key], states)))
    people = wf_roles - PSEUDO_ROLES  # closing a round is done by a person holding the role
    for i, role in enumerate(raw["roles"]):
        if role not in people:
            ld.problems.append(source.problem(path + ["roles", i], f"unknown role {role!r}",
                                              did_you_mean(role, people) or "list it in the workflow's roles"))
    names = data_names | GUARD_NAMES
    by = ld.expression(source, path + ["by"], raw["by"], names, "ranking.by")
    ties = []
    for i, rule in enumerate(raw.get("tie_break", [])):
        expr = ld.expression(source, path + ["tie_break", i, "by"], rule["by"], names, "ranking.tie_break")
        if expr is not None:
            ties.append((expr, rule.get("order", "desc")))
    seen: set[str] = set()
    for i, level in enumerate(raw["levels"]):
        if level["id"] in seen:
            ld.problems.append(source.problem(path + ["levels", i, "id"], f"duplicate level {level['id']!r}"))
        seen.add(level["id"])
    if by is None:
        return None
    return RankingSpec(
        state=raw["state"], by=by, levels=tuple(LevelSpec(x["id"], text(x["label"]) or {}, x["quota"]) for x in raw["levels"]),
        selected=raw["selected"], rest=raw["rest"], roles=tuple(raw["roles"]), into=raw.get("into", "award_level"),
        order=raw.get("order", "desc"), tie_break=tuple(ties), on_tie=raw.get("on_tie", "refuse"))


# --------------------------------------------------------------------------- ranking (pure)

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


# --------------------------------------------------------------------------- run time

def may_rank(spec: RankingSpec, user: "User") -> bool:
    return bool(set(spec.roles) & set(user.roles))


class Outcome(EdgeKind):
    """A ``ranking`` edge: closing the round moves a ranked case to ``selected`` or ``rest``, with its level."""

    def check_roles(self, engine: Any, case: "Case", edge: "EdgeSpec", actor: "User", step: Step) -> None:
        if not set(edge.roles) & set(actor.roles):
            raise NotAllowed(msg("您的角色不能确定排名。", "Your role may not close a ranking round."))

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        case.data.update(step.data)
        return [{"field": name, "old": None, "new": value} for name, value in step.data.items()]

    def label(self, edge: "EdgeSpec", step: Step) -> Text:
        return CLOSED_LABEL


OUTCOME = Outcome()


def results(case: "Case", wf: "WorkflowSpec", found: list[dict[str, Any]]) -> None:
    """Add the case's ranking level, labelled, to ``found`` (see ``Engine.results``)."""
    if wf.ranking and case.data.get(wf.ranking.into):
        level = next((lv for lv in wf.ranking.levels if lv.id == case.data[wf.ranking.into]), None)
        if level is not None:
            found.append({"name": wf.ranking.into, "label": {"zh": "评选结果", "en": "Result"}, "value": dict(level.label)})


class RankingMixin(EngineBase):
    """Rounds and ranking (mixed into :class:`engine.runtime.Engine`)."""

    def rounds(self, workflow_id: str, user: "User") -> list[str]:
        return self.read.rounds(workflow_id)

    def ranking(self, workflow_id: str, round_id: str, user: "User") -> RankResult:
        wf = self.definitions.workflows[workflow_id]
        if wf.ranking is None:
            raise NotFound(msg("此流程没有排名", "This process has no ranking."))
        cases = [c for c in self.read.round_cases(None, wf, wf.ranking.state, round_id) if self.can_see(c, user)]
        return rank(wf.ranking, cases, lambda c: self.guard_context(c, user))

    def can_rank(self, wf: "WorkflowSpec", user: "User") -> bool:
        return wf.ranking is not None and may_rank(wf.ranking, user)

    def round_closed(self, workflow_id: str, round_id: str) -> dict[str, Any] | None:
        return self.read.round_closed(workflow_id, round_id)

    def close_round(self, workflow_id: str, round_id: str, user: "User") -> RankResult:
        """Rank the round and move every ranked case: the top of each level to ``selected``, the rest to ``rest``."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None or wf.ranking is None:
            raise NotFound(msg("此流程没有排名", "This process has no ranking."))
        spec = wf.ranking
        if not may_rank(spec, user):  # before anything else: a non-ranker learns nothing about the round
            raise NotAllowed(msg("您的角色不能确定排名。", "Your role may not close a ranking round."))
        with self.store.transaction() as tx:
            if self.read.round_closed(workflow_id, round_id, tx):
                raise TransitionError(msg(f"{round_id} 已确定排名。", f"Round {round_id} is already closed."))
            cases = [c for c in self.read.round_cases(tx, wf, spec.state, round_id) if self.can_see(c, user)]
            if not cases:
                raise TransitionError(msg("本轮没有待排名的事项。", "No cases are waiting to be ranked in this round."))
            result = rank(spec, cases, lambda c: self.guard_context(c, user))
            if result.blocking_ties:
                tie = result.blocking_ties[0]
                ids = "、".join(f"#{i}" for i in tie["cases"])
                raise TransitionError(msg(f"名额边界出现并列（{ids}），请先按规则处理并列后再确定排名。",
                                          f"A tie at the quota boundary ({ids.replace('、', ', ')}): resolve it before closing."))
            now = self.clock()
            by_id = {c.id: c for c in cases}
            labels = {lv.id: lv.label for lv in spec.levels}
            for placed in result.placed:
                case = by_id[placed.case_id]
                outcome = "selected" if placed.level else "rest"
                edge = next(e for e in wf.edges_from(spec.state) if e.kind == "ranking" and e.outcome == outcome)
                level = labels.get(placed.level or "", msg("未入选", "not selected"))
                moves.take(self, tx, case, edge, user, Step(comment=f"第 {placed.rank} 名 · {tr(level, 'zh')}",
                                                             data={spec.into: placed.level}, rank=placed.rank))
                tx.replace(CASES, case.id, case.to_doc())
            tx.insert(ROUNDS, {"workflow": workflow_id, "round": round_id, "closed_at": iso(now), "by": user.username,
                               "results": [{"case": p.case_id, "rank": p.rank, "level": p.level} for p in result.placed],
                               "ties": result.ties})
        return result
