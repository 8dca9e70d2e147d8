"""Rounds and ranking: cases belong to a round by start date; closing a round ranks the cases waiting in
``ranking.state`` and hands out places by quota, never breaking a tie silently; each ranked case then moves
along a ``ranking`` edge to ``selected`` or ``rest``. A workflow may hold several rankings closed together in
one round (``ranking:`` a list, e.g. one per award title: each its own quota, ranking the cases its ``where``
picks), and a closed round may be reopened with a reason (``round.reopen``): every case it moved comes back
along a ``ranking`` edge (``via`` ``reopen``) to be ranked again.

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
REOPENED_LABEL: Text = {"zh": "重新开启排名", "en": "Ranking reopened"}


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
    id: str = ""                                    # one of several rankings of the round
    label: Text | None = None
    where: Expression | None = None                 # the waiting cases it ranks (None: all not taken before)
    reopen: tuple[str, ...] | None = None           # round.reopen.roles: who may reopen a closed round


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

def build(ld: "Loader", source: "YamlSource", raw: dict | list | None, states: dict, wf_roles: set[str],
          data_names: set[str], reopen: list[str] | None = None) -> tuple[RankingSpec, ...] | None:
    """The workflow's rankings (one mapping, or a list of several closed together); None when one cannot be built."""
    if raw is None:
        return ()
    items = [(["ranking"], raw)] if isinstance(raw, dict) else [(["ranking", i], r) for i, r in enumerate(raw)]
    built, ids, broken = [], set(), False
    for path, item in items:
        if isinstance(raw, list):
            if item["id"] in ids:
                ld.problems.append(source.problem(path + ["id"], f"duplicate ranking {item['id']!r}"))
            ids.add(item["id"])
        spec = _build_one(ld, source, path, item, states, wf_roles, data_names, reopen)
        broken = broken or spec is None
        if spec is not None:
            built.append(spec)
    for i, spec in enumerate(built):  # rankings of one state share its two ranking edges
        other = next((o for o in built[:i] if o.state == spec.state and (o.selected, o.rest) != (spec.selected, spec.rest)), None)
        if other is not None:
            ld.problems.append(source.problem(["ranking", i, "selected"], f"ranking {spec.id!r} sends cases from {spec.state!r} elsewhere than ranking {other.id!r}",
                                              f"rankings of one state move cases to the same states: selected: {other.selected}, rest: {other.rest}"))
    return None if broken else tuple(built)


def _build_one(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict, states: dict, wf_roles: set[str],
               data_names: set[str], reopen: list[str] | None) -> RankingSpec | None:
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
    where = ld.expression(source, path + ["where"], raw.get("where"), names, "ranking.where")
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
    if by is None or ("where" in raw and where is None):
        return None
    return RankingSpec(
        state=raw["state"], by=by, levels=tuple(LevelSpec(x["id"], text(x["label"]) or {}, x["quota"]) for x in raw["levels"]),
        selected=raw["selected"], rest=raw["rest"], roles=tuple(raw["roles"]), into=raw.get("into", "award_level"),
        order=raw.get("order", "desc"), tie_break=tuple(ties), on_tie=raw.get("on_tie", "refuse"),
        id=raw.get("id", ""), label=text(raw.get("label")), where=where,
        reopen=tuple(reopen) if reopen is not None else None)


# --------------------------------------------------------------------------- ranking (pure)

@dataclass
class Placed:
    case_id: int
    title: str
    key: tuple[Any, ...]
    rank: int
    level: str | None
    tied_with: list[int] = field(default_factory=list)
    ranking: str = ""                    # the ranking's id (several in one round)


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
        placed.append(Placed(case.id, case.title, key, position, level_of.get(case.id), tied, spec.id))
    return RankResult(placed, ties)


@dataclass
class RoundResult:
    """Every ranking of a round: ``parts`` (spec, result) in definition order; ``unranked``: waiting cases no
    ranking's ``where`` picks (they stay where they are). ``placed`` / ``ties`` run over all parts."""

    parts: list[tuple[RankingSpec, RankResult]]
    unranked: list[Any] = field(default_factory=list)

    @property
    def placed(self) -> list[Placed]:
        return [p for _, part in self.parts for p in part.placed]

    @property
    def ties(self) -> list[dict[str, Any]]:
        return [t for _, part in self.parts for t in part.ties]

    @property
    def blocking_ties(self) -> list[dict[str, Any]]:
        return [t for t in self.ties if t["resolved"] == "refuse"]


def rank_round(specs: tuple[RankingSpec, ...], waiting: Callable[[str], list[Any]],
               context: Callable[[Any], dict[str, Any]]) -> RoundResult:
    """Each waiting case (``waiting(state)``: the round's cases in a ranking state) in the first ranking of its state
    whose ``where`` holds, then each ranking ranked on its own."""
    members: dict[int, list[Any]] = {i: [] for i in range(len(specs))}
    unranked = []
    for state in dict.fromkeys(spec.state for spec in specs):
        for case in waiting(state):
            ctx = context(case)
            i = next((i for i, spec in enumerate(specs) if spec.state == state
                      and (spec.where is None or spec.where.test(ctx))), None)
            if i is None:
                unranked.append(case)
            else:
                members[i].append(case)
    return RoundResult([(spec, rank(spec, members[i], context)) for i, spec in enumerate(specs)], unranked)


# --------------------------------------------------------------------------- run time

def may_rank(spec: RankingSpec, user: "User") -> bool:
    return bool(set(spec.roles) & set(user.roles))


def edges(rankings: tuple[RankingSpec, ...]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The state graph's ranking edges (source, target, outcome, roles), once per state: closing the round moves a
    case to ``selected`` or ``rest``; a round that may be reopened brings it back from there (outcome ``reopen``)."""
    found: dict[tuple[str, str], tuple[str, str, str, tuple[str, ...]]] = {}

    def add(source: str, target: str, outcome: str, roles: tuple[str, ...]) -> None:
        key = (source, outcome)
        if key in found:  # several rankings of one state: one edge, any of their roles
            source, target, outcome, before = found[key]
            roles = tuple(dict.fromkeys(before + roles))
        found[key] = (source, target, outcome, roles)

    for spec in rankings:
        add(spec.state, spec.selected, "selected", spec.roles)
        add(spec.state, spec.rest, "rest", spec.roles)
    for spec in rankings:
        if spec.reopen is not None:
            for target in (spec.selected, spec.rest):
                add(target, spec.state, "reopen", spec.reopen)
    return list(found.values())


class Outcome(EdgeKind):
    """A ``ranking`` edge: closing the round moves a ranked case to ``selected`` or ``rest``, with its level;
    reopening it moves the case back (``reopen``), its level cleared."""

    def check_roles(self, engine: Any, case: "Case", edge: "EdgeSpec", actor: "User", step: Step) -> None:
        if not set(edge.roles) & set(actor.roles):
            if edge.outcome == "reopen":
                raise NotAllowed(msg("您的角色不能重新开启排名。", "Your role may not reopen a ranking round."))
            raise NotAllowed(msg("您的角色不能确定排名。", "Your role may not close a ranking round."))

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        changes = [{"field": name, "old": case.data.get(name), "new": value} for name, value in step.data.items()]
        case.data.update(step.data)
        return changes

    def label(self, edge: "EdgeSpec", step: Step) -> Text:
        return REOPENED_LABEL if edge.outcome == "reopen" else CLOSED_LABEL


OUTCOME = Outcome()


def level_of(case: "Case", wf: "WorkflowSpec") -> tuple[RankingSpec, LevelSpec] | None:
    """The ranking and level the case was placed at (its ranking named in the data the round wrote)."""
    for spec in wf.rankings:
        value = case.data.get(spec.into)
        if value and case.data.get(f"{spec.into}_ranking", spec.id) == spec.id:
            level = next((lv for lv in spec.levels if lv.id == value), None)
            if level is not None:
                return spec, level
    return None


def results(case: "Case", wf: "WorkflowSpec", found: list[dict[str, Any]]) -> None:
    """Add the case's ranking level, labelled, to ``found`` (see ``Engine.results``)."""
    placed = level_of(case, wf)
    if placed is not None:
        spec, level = placed
        value = {lang: (f"{spec.label[lang]} · " if spec.label and spec.label.get(lang) else "") + level.label.get(lang, "")
                 for lang in ("zh", "en")}
        found.append({"name": spec.into, "label": {"zh": "评选结果", "en": "Result"}, "value": value})


class RankingMixin(EngineBase):
    """Rounds and ranking (mixed into :class:`engine.runtime.Engine`)."""

    def rounds(self, workflow_id: str, user: "User") -> list[str]:
        return self.read.rounds(workflow_id)

    def _rank_round(self, tx: Any, wf: "WorkflowSpec", round_id: str, user: "User") -> RoundResult:
        def waiting(state: str) -> list["Case"]:
            return [c for c in self.read.round_cases(tx, wf, state, round_id) if self.can_see(c, user)]
        return rank_round(wf.rankings, waiting, lambda c: self.guard_context(c, user))

    def ranking(self, workflow_id: str, round_id: str, user: "User") -> RoundResult:
        wf = self.definitions.workflows[workflow_id]
        if wf.ranking is None:
            raise NotFound(msg("此流程没有排名", "This process has no ranking."))
        return self._rank_round(None, wf, round_id, user)

    def can_rank(self, wf: "WorkflowSpec", user: "User") -> bool:
        return any(may_rank(spec, user) for spec in wf.rankings)

    def can_reopen(self, wf: "WorkflowSpec", user: "User") -> bool:
        return any(spec.reopen is not None and set(spec.reopen) & set(user.roles) for spec in wf.rankings)

    def round_closed(self, workflow_id: str, round_id: str) -> dict[str, Any] | None:
        return self.read.round_closed(workflow_id, round_id)

    def round_reopenings(self, workflow_id: str, round_id: str) -> list[dict[str, Any]]:
        """The times a round was reopened, oldest first: {"at", "by", "name", "reason", "results"}."""
        return [r for doc in self.read.round_reopened(workflow_id, round_id) for r in doc.get("reopened", [])]

    def close_round(self, workflow_id: str, round_id: str, user: "User") -> RoundResult:
        """Rank the round and move every ranked case: the top of each level to ``selected``, the rest to ``rest``."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None or wf.ranking is None:
            raise NotFound(msg("此流程没有排名", "This process has no ranking."))
        if not self.can_rank(wf, user):  # before anything else: a non-ranker learns nothing about the round
            raise NotAllowed(msg("您的角色不能确定排名。", "Your role may not close a ranking round."))
        with self.store.transaction() as tx:
            if self.read.round_closed(workflow_id, round_id, tx):
                raise TransitionError(msg(f"{round_id} 已确定排名。", f"Round {round_id} is already closed."))
            result = self._rank_round(tx, wf, round_id, user)
            if not result.placed:
                raise TransitionError(msg("本轮没有待排名的事项。", "No cases are waiting to be ranked in this round."))
            if result.blocking_ties:
                tie = result.blocking_ties[0]
                ids = "、".join(f"#{i}" for i in tie["cases"])
                raise TransitionError(msg(f"名额边界出现并列（{ids}），请先按规则处理并列后再确定排名。",
                                          f"A tie at the quota boundary ({ids.replace('、', ', ')}): resolve it before closing."))
            now = self.clock()
            several = len(wf.rankings) > 1
            for spec, part in result.parts:
                labels = {lv.id: lv.label for lv in spec.levels}
                for placed in part.placed:
                    case = self._load(tx, placed.case_id, None)
                    outcome = "selected" if placed.level else "rest"
                    edge = next(e for e in wf.edges_from(spec.state) if e.kind == "ranking" and e.outcome == outcome)
                    level = labels.get(placed.level or "", msg("未入选", "not selected"))
                    title = f"{tr(spec.label, 'zh')} · " if several and spec.label else ""
                    data: dict[str, Any] = {spec.into: placed.level}
                    if several:
                        data[f"{spec.into}_ranking"] = spec.id
                    moves.take(self, tx, case, edge, user, Step(comment=f"{title}第 {placed.rank} 名 · {tr(level, 'zh')}",
                                                                 data=data, rank=placed.rank))
                    tx.replace(CASES, case.id, case.to_doc())
            tx.insert(ROUNDS, {"workflow": workflow_id, "round": round_id, "closed_at": iso(now), "by": user.username,
                               "results": [{"case": p.case_id, "rank": p.rank, "level": p.level, "ranking": p.ranking}
                                           for p in result.placed],
                               "ties": result.ties})
        return result

    def reopen_round(self, workflow_id: str, round_id: str, user: "User", reason: str) -> list["Case"]:
        """Reopen a closed round (``round.reopen``): every case it moved comes back to its ranking state along a
        ``reopen`` edge, the reason in each one's history, its level cleared; the round can then be closed again.
        Refused while a case the round moved has moved on since (an award given, an objection under review): its
        later steps are not undone behind anyone's back."""
        wf = self.definitions.workflows.get(workflow_id)
        if wf is None or wf.ranking is None:
            raise NotFound(msg("此流程没有排名", "This process has no ranking."))
        if not self.can_reopen(wf, user):
            raise NotAllowed(msg("您的角色不能重新开启排名。", "Your role may not reopen a ranking round."))
        reason = (reason or "").strip()
        if not reason:
            raise TransitionError(msg("请填写重新开启排名的理由。", "Give the reason for reopening the round."))
        specs = {spec.id: spec for spec in wf.rankings}
        with self.store.transaction() as tx:
            closed = self.read.round_closed(workflow_id, round_id, tx)
            if closed is None:
                raise TransitionError(msg(f"{round_id} 尚未确定排名。", f"Round {round_id} is not closed."))
            back, moved_on = [], []
            for entry in closed["results"]:
                spec = specs.get(entry.get("ranking") or "", wf.ranking)
                case = self._load(tx, entry["case"], None)
                expected = spec.selected if entry["level"] else spec.rest
                (back if case.state == expected else moved_on).append((spec, case))
            if moved_on:
                ids = "、".join(f"#{c.id}" for _, c in moved_on)
                raise TransitionError(msg(f"以下事项在确定排名后已继续办理，不能重新开启：{ids}。",
                                          f"These cases have moved on since the round closed: {ids.replace('、', ', ')}."))
            for spec, case in back:
                edge = wf.edge(case.state, spec.state, kind="ranking", via="reopen")
                assert edge is not None  # built for every ranking of a round that may be reopened
                data: dict[str, Any] = {spec.into: None}
                if f"{spec.into}_ranking" in case.data:
                    data[f"{spec.into}_ranking"] = None
                moves.take(self, tx, case, edge, user, Step(comment=reason, data=data))
                tx.replace(CASES, case.id, case.to_doc())
            closed["reopened"] = closed.get("reopened", []) + [
                {"at": iso(self.clock()), "by": user.username, "name": user.name, "reason": reason,
                 "closed_at": closed["closed_at"], "results": closed["results"]}]
            closed["closed_at"] = None  # no longer under ("round", …) of the index: the round is open again
            tx.replace(ROUNDS, closed["id"], closed)
        return [c for _, c in back]
