"""催办 urge: remind the people a case waits for that it is waiting.

The person who started the case, or anyone who may see it and is not one of those it waits for, urges: the
current assignees, the approvers still to act and the holders of the roles the case waits for (within their reach)
are notified (in the app, and by the channels each asked for). Once per period per case: the workflow's
``urge: {every: 1d}`` (the default), ``urge: false`` turns it off (no urge edges then). An urge is a self-loop of
kind ``urge`` through the one transition path: a history entry, a new case version, timers untouched.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from ..cases import CASES
from ..clock import SHANGHAI
from ..durations import Duration
from ..errors import NotAllowed, StaleVersion, TransitionError
from ..loadkit import msg
from ..notify import notify
from ..spec import PSEUDO_ROLES, EdgeSpec, Text
from ..users import User
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..store.base import Transaction
    from ..yamlsource import YamlSource

LABEL: Text = {"zh": "催办", "en": "Urge"}
DEFAULT = Duration(1, "d")


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", raw: Any) -> Duration | None:
    """``urge:`` absent or ``true``: once a day; ``false``: off; ``{every: 12h}``: that period."""
    if raw is None or raw is True:
        return DEFAULT
    if raw is False:
        return None
    every = Duration.parse(raw["every"])  # the schema checked its form
    if every.amount == 0:
        ld.problems.append(source.problem(["urge", "every"], f"{every} is no period: a case could be urged again at once",
                                          "e.g. every: 1d (once a day), or urge: false to turn urging off"))
    return every


def edges(sid: str) -> list[EdgeSpec]:
    return [EdgeSpec(sid, sid, "urge", "urge", LABEL, ())]


# --------------------------------------------------------------------------- run time

def last_urged(case: "Case") -> str | None:
    """When the case was last urged (ISO time), from its history."""
    return next((h["at"] for h in reversed(case.history) if h.get("action") == "urge"), None)


def next_possible(engine: Any, case: "Case") -> dt.datetime | None:
    """The first moment the case may be urged again (None: now)."""
    every = engine.workflow_of(case).urge
    last = last_urged(case)
    if every is None or last is None:
        return None
    due = every.after(dt.datetime.fromisoformat(last), engine.definitions.calendar)
    return due if engine.clock() < due else None


def targets(engine: Any, tx: "Transaction | None", case: "Case") -> list[str]:
    """Everyone the case waits for now: holders of its waiting roles within reach, its assignees, the approvers
    still to act, the people it was escalated to."""
    from . import approval  # here: approval imports the transition path, which imports this module

    names = set(case.assignees) | set(case.escalated_to)
    for role in set(case.waiting_for) - PSEUDO_ROLES:
        names |= {u.username for u in engine.users(tx, role) if role in engine.access.roles_for(case, u)}
    if "creator" in case.waiting_for:
        names.add(case.created_by)
    names |= set(approval.pending(approval.current(case, case.state)))
    return sorted(names)


def shown(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


class Urge(EdgeKind):
    """An ``urge`` edge: tell the people the case waits for."""

    def check_roles(self, engine: Any, case: "Case", edge: EdgeSpec, actor: User, step: Step) -> None:
        if case.created_by == actor.username:
            return
        if not engine.access.can_see(case, actor):
            raise NotAllowed(msg("您不能催办此事项。", "You may not urge this case."))
        if engine.waits_for(case, actor, delegated=False):
            raise NotAllowed(msg("此事项正等您办理，无需催办。", "This case is waiting for you: no need to urge."))

    def check_guard(self, engine: Any, case: "Case", edge: EdgeSpec, actor: User, step: Step) -> None:
        again = next_possible(engine, case)
        if again is not None:
            raise TransitionError(msg(f"本事项已于 {shown(dt.datetime.fromisoformat(last_urged(case) or ''))} 催办过，"
                                      f"{shown(again)} 后可再次催办。",
                                      f"This case was urged at {shown(dt.datetime.fromisoformat(last_urged(case) or ''))}; "
                                      f"it can be urged again from {shown(again)}."))

    def validate(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: User, step: Step) -> None:
        step.comment = step.comment[:500]
        step.chosen = [u for u in targets(engine, tx, case) if u != actor.username]
        if not step.chosen:
            raise TransitionError(msg("此事项当前没有可催办的办理人。", "Nobody could be found to urge on this case."))

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: User, step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        step.record["urged"] = engine.read.display_names(step.chosen)
        return []

    def label(self, edge: EdgeSpec, step: Step) -> Text:
        names = step.record.get("urged") or []
        return {"zh": f"催办：{'、'.join(names)}", "en": f"Urged: {', '.join(names)}"}

    def reenters(self, edge: EdgeSpec) -> bool:
        return False  # a reminder: the deadline and the timers go on as they were

    def after(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: User, step: Step,
              now: dt.datetime) -> None:
        notify(tx, step.chosen, "urge", case, LABEL, now, skip=actor.username)


URGE = Urge()


class UrgeMixin(EngineBase):
    """Urging (mixed into :class:`engine.runtime.Engine`)."""

    def urge(self, case_id: int, user: User, comment: str = "", expected_version: int | None = None) -> "Case":
        from .. import transition as moves  # here: the transition path imports this module

        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            edge = self.workflow_of(case).edge(case.state, case.state, kind="urge", via="urge")
            if edge is None:
                raise TransitionError(msg("此事项不能催办。", "This case cannot be urged."))
            moves.take(self, tx, case, edge, user, Step(comment=comment or ""))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def urge_status(self, case: "Case", user: User) -> dict[str, Any] | None:
        """For the case page: None when ``user`` may not urge the case at all; else ``{"next": when the next urge
        is possible (shown time, "" for now), "last": when it was last urged, "every": the period, "nobody": whether
        there is nobody to urge now}``."""
        from .. import transition as moves

        edge = self.workflow_of(case).edge(case.state, case.state, kind="urge", via="urge")
        if edge is None:
            return None
        try:
            moves.check(self, case, edge, user, Step(), guard=False)
        except TransitionError:
            return None
        again = next_possible(self, case)
        last = last_urged(case)
        return {"next": shown(again) if again else "", "last": shown(dt.datetime.fromisoformat(last)) if last else "",
                "every": str(self.workflow_of(case).urge),
                "nobody": not [u for u in targets(self, None, case) if u != user.username]}

