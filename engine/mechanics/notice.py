"""Public notice (公示), objections and publication.

A state with ``notice:`` lists its cases publicly for a while; a resident may object (the case moves to
``objection.to``, an ``objection`` edge); when time runs out the clock takes ``on_expiry``. A state with
``publish: true`` appends what it makes public to the tamper-evident publication chain.

Holds the spec (:class:`NoticeSpec`), its load-time check (:func:`build`) and its runtime: :func:`arm` (the
expiry timer), :func:`on_leave` (deciding open objections), :func:`on_enter` (publication), the objection
edge kind (:class:`Objection`, used by the one transition path) and :class:`NoticeMixin` (the Engine's
``object``, ``public_data``, ``public_rows``, ``public_cases``, ``public_case``, ``notice_ends``,
``notice_days_left``).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import forms, ledger
from .. import transition as moves
from ..cases import CASES, Case, is_case_number
from ..clock import iso
from ..durations import Duration
from ..workdays import WorkCalendar
from ..errors import NotAllowed, NotFound, SubmissionError, TransitionError
from ..loadkit import did_you_mean, msg
from ..notify import notify
from ..spec import PSEUDO_ROLES, tr
from . import timers
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..loader import Loader
    from ..spec import EdgeSpec, StateSpec, WorkflowSpec
    from ..store.base import Transaction
    from ..users import User
    from ..yamlsource import PathItem, YamlSource

#: How long an objection's reason may be (longer ones are cut).
REASON_LIMIT = 2000


@dataclass(frozen=True)
class NoticeSpec:
    """Public notice (公示): listed publicly for ``duration``; objections move the case to ``objection_to``;
    when time runs out the system takes ``on_expiry``."""

    duration: Duration
    on_expiry: str
    objection_roles: tuple[str, ...]
    objection_to: str
    public_fields: tuple[str, ...] = ()


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None, states: dict,
          transition_ids: dict[str, list[str]], wf_roles: set[str], data_names: set[str]) -> NoticeSpec | None:
    if raw is None:
        return None
    # ``after`` / ``then``: the timed move, spelt as everywhere (old ``duration`` / ``on_expiry``: engine.spelling)
    if raw["then"] not in transition_ids:
        ld.problems.append(source.problem(path + ["then"], f"unknown transition {raw['then']!r} in this state",
                                          did_you_mean(raw["then"], transition_ids) or "name one of this state's transitions"))
    timers.clock_takes(ld, source, path + ["then"], raw["then"], transition_ids)
    target = raw["objection"]["to"]
    if target not in states:
        ld.problems.append(source.problem(path + ["objection", "to"], f"unknown state {target!r}", did_you_mean(target, states)))
    people = wf_roles - PSEUDO_ROLES  # objections come from people holding a role, never creator / assignee / system
    roles = raw["objection"].get("roles", ["resident"])
    if "roles" not in raw["objection"] and "resident" not in people:
        ld.problems.append(source.problem(path + ["objection"], "objections come from 'resident' by default, "
                                          "but it is not a role of this workflow",
                                          "say who may object, e.g. objection: {roles: [resident], to: ...}, "
                                          "and list that role in the workflow's roles"))
    for i, role in enumerate(raw["objection"].get("roles", [])):
        if role not in people:
            ld.problems.append(source.problem(path + ["objection", "roles", i], f"unknown role {role!r}",
                                              did_you_mean(role, people) or "list it in the workflow's roles"))
    return NoticeSpec(Duration.parse(raw["after"]), raw["then"], tuple(roles), target,
                      ld.field_names(source, path + ["public_fields"], raw.get("public_fields", []), data_names))


# --------------------------------------------------------------------------- run time: the transition path's hooks

def arm(state: "StateSpec", now: dt.datetime, calendar: WorkCalendar | None = None) -> list[dict[str, Any]]:
    """The expiry timer of a notice state."""
    if not state.notice:
        return []
    return [{"kind": "notice", "state": state.id, "due": iso(state.notice.duration.after(now, calendar)),
             "transition": state.notice.on_expiry, "done": False}]


def on_leave(case: Case, wf: "WorkflowSpec", source: str, target: str, actor: "User", now: dt.datetime) -> None:
    """Leaving an objection review decides its open objections: back to the notice means dismissed,
    anywhere else upheld."""
    if source == target or not any(s.notice and s.notice.objection_to == source for s in wf.states.values()):
        return
    back = any(s.notice and s.notice.objection_to == source and s.id == target for s in wf.states.values())
    for objection in case.objections:
        if objection["status"] == "open":
            objection.update(status="dismissed" if back else "upheld", decided_by=actor.username, decided_at=iso(now))


def on_enter(engine: Any, tx: "Transaction", case: Case, state: "StateSpec", actor: "User", now: dt.datetime) -> None:
    """Entering a ``publish`` state records what it makes public in the publication chain."""
    if state.publish:
        ledger.publish(tx, case, state.id, engine.public_data(case, state), actor.username, now)


class Objection(EdgeKind):
    """An ``objection`` edge: a holder of one of the notice's objection roles, with a reason."""

    def check_roles(self, engine: Any, case: Case, edge: "EdgeSpec", actor: "User", step: Step) -> None:
        if not set(edge.roles) & set(actor.roles):
            raise NotAllowed(msg("只有居民可以在公示期提出异议。", "Only residents may object during a public notice."))

    def validate(self, engine: Any, tx: "Transaction", case: Case, edge: "EdgeSpec", actor: "User", step: Step) -> None:
        if not step.comment:
            raise SubmissionError({"reason": [msg("请写明异议理由", "Please give the reason for your objection.")]})
        step.comment = step.comment[:REASON_LIMIT]

    def apply(self, engine: Any, tx: "Transaction", case: Case, edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        case.objections.append({"by": actor.username, "name": actor.name, "at": iso(now), "reason": step.comment,
                                "status": "open", "state": case.state})
        return []

    def after(self, engine: Any, tx: "Transaction", case: Case, edge: "EdgeSpec", actor: "User", step: Step,
              now: dt.datetime) -> None:
        notify(tx, engine._waiting_people(tx, case), "objection", case, edge.label, now, skip=actor.username)


OBJECTION = Objection()


# --------------------------------------------------------------------------- run time: the Engine's methods

class NoticeMixin(EngineBase):
    """Public notice, objections and the public page (mixed into :class:`engine.runtime.Engine`)."""

    def object(self, case_id: int, user: "User", reason: str) -> Case:
        """File an objection during a public notice: the case moves to the declared review state."""
        with self.store.transaction() as tx:
            doc = tx.get(CASES, case_id)
            if doc is None:
                raise NotFound(msg(f"事项 #{case_id} 不存在", f"case #{case_id} does not exist"))
            case = Case.from_doc(doc, owned=True)
            wf = self.workflow_of(case)
            state = self.state_of(case)
            edge = wf.edge(case.state, state.notice.objection_to, kind="objection") if state.notice else None
            if edge is None:
                raise TransitionError(msg("公示已结束，不能再提出异议。", "The public notice period is over."))
            moves.take(self, tx, case, edge, user, Step(comment=reason or ""))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def public_data(self, case: Case, state: "StateSpec") -> dict[str, Any]:
        """What the public page may show of a case: declared fields only, sensitive ones masked."""
        wf = self.workflow_of(case)
        names = state.notice.public_fields if state.notice else state.public_fields
        by_id = {f.id: f for _, f in self.data_fields(wf)}
        result = {}
        for name in names:
            value = case.data.get(name)
            f = by_id.get(name)
            if f is not None and f.sensitive:
                value = forms.mask(value)
            result[name] = value
        return result

    def public_rows(self, case: Case, state: "StateSpec", lang: str = "zh") -> list[tuple[str, str]]:
        """The public page's (label, text) rows: declared fields only, sensitive ones masked, results labelled."""
        data = self.public_data(case, state)
        by_id = {f.id: f for _, f in self.data_fields(self.workflow_of(case))}
        results = {r["name"]: r for r in self.results(case)}
        people = self.people()  # a user field shows display names
        rows = []
        for name, value in data.items():
            if name in results:
                rows.append((tr(results[name]["label"], lang), tr(results[name]["value"], lang)))
            elif name in by_id and by_id[name].is_repeat:
                f = by_id[name]
                lines = ["；".join(forms.display(sub, row.get(sub.id), lang, self.definitions.org, people)
                                  for sub in f.fields if row.get(sub.id) not in (None, "", []) and not sub.sensitive)
                         for row in value or []]
                rows.append((tr(f.label, lang), "\n".join(lines)))
            elif name in by_id:
                shown = value if by_id[name].sensitive else forms.display(by_id[name], value, lang, self.definitions.org, people)
                rows.append((tr(by_id[name].label, lang), str(shown or "")))
            else:
                rows.append((name, str(value or "")))
        return rows

    def public_cases(self, page: int = 1, size: int | None = None) -> list[tuple[Case, "StateSpec"]]:
        """Cases on public notice or in a public state, for the page anyone may read, newest first."""
        return [(case, self.state_of(case)) for case in self.read.public(page, size).items]

    def public_case(self, case_id: int) -> tuple[Case, "StateSpec"] | None:
        doc = self.store.get(CASES, case_id) if is_case_number(case_id) else None
        if doc is None:
            return None
        case = Case.from_doc(doc, owned=True)
        wf = self.spec_of(case)
        state = wf.states.get(case.state) if wf else None
        return (case, state) if state is not None and (state.notice or state.public) else None

    def notice_ends(self, case: Case) -> str | None:
        return next((t["due"] for t in case.timers if t["kind"] == "notice" and not t["done"]), None)

    def notice_days_left(self, case: Case) -> int | None:
        """Days until the notice period ends, rounded up (a few hours left count as 1)."""
        ends = self.notice_ends(case)
        if ends is None:
            return None
        seconds = (dt.datetime.fromisoformat(ends) - self.clock()).total_seconds()
        return max(0, -(-int(seconds) // 86400))
