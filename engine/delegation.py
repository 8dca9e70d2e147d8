"""委托 / 代理 delegation: a person hands all their tasks to a colleague for a date range.

A delegation is kept in the delegator's user record (``delegations``: ``{"id", "delegate", "from", "to",
"created_at", "ended_at"}``, dates ``YYYY-MM-DD`` in Asia/Shanghai, both ends included), the way ``sessions`` are,
and the users index files the record under ``("delegate", username)`` while it is not ended, so "who hands tasks
to me" is one lookup. It is active on the days from ``from`` to ``to`` by the engine's clock, unless ended early.

While it is active the delegate's inbox also lists the delegator's tasks (the union of both inbox queries,
``engine.inbox``), and the delegate may act on a case that waits for the delegator with the delegator's roles and
scope: the one transition path tries the delegate first and then, for each delegator the case waits for, the
delegator (:func:`engine.transition.authority`), as a :class:`engine.users.User` carrying ``delegate``. The history
entry then names the delegate as ``by`` and the delegator as ``on_behalf_of`` (``Engine._record``), and the
delegator is notified.

Delegation does not chain: a delegate who delegates in turn hands on their own tasks, not the ones delegated to
them. Contributions to a ``collect`` step (a rating, a score) are a person's own opinion and are not delegated.

The rule for whom one may delegate to: an active colleague who holds at least one of the delegator's roles (a
resident cannot take over a secretary's approvals); they act with the delegator's roles on the delegated cases only.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

from .clock import SHANGHAI, iso
from .errors import SubmissionError, TransitionError
from .loadkit import msg
from .users import USERS, User

if TYPE_CHECKING:
    from .cases import Case
    from .runtime import Engine
    from .store.base import Transaction

#: how far ahead a delegation may end (a standing handover belongs in the roles, not here)
LONGEST = dt.timedelta(days=366)


def today(engine: "Engine") -> dt.date:
    return engine.clock().astimezone(SHANGHAI).date()


def active(d: dict[str, Any], day: dt.date) -> bool:
    return not d.get("ended_at") and d.get("from", "") <= day.isoformat() <= d.get("to", "")


def keys(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """The users index keys of a user record's delegations still in force (not ended)."""
    return [("delegate", d["delegate"]) for d in doc.get("delegations") or () if not d.get("ended_at")]


def _date(value: str, field: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise SubmissionError({field: [msg("请填写日期（年-月-日）", "Enter a date (year-month-day).")]}) from None


def of(engine: "Engine", username: str) -> list[dict[str, Any]]:
    """The delegations ``username`` made, newest first, each with ``status`` (active, upcoming, over, ended) and
    the delegate's name."""
    doc = engine.read.user_doc(username)
    day = today(engine).isoformat()
    found = []
    for d in reversed((doc or {}).get("delegations") or []):
        status = "ended" if d.get("ended_at") else "over" if d["to"] < day else "upcoming" if d["from"] > day else "active"
        found.append({**d, "status": status, "delegate_name": engine.read.display_names([d["delegate"]])[0]})
    return found


def add(engine: "Engine", user: User, delegate: str, start: str, end: str) -> dict[str, Any]:
    """``user`` delegates all their tasks to ``delegate`` from ``start`` to ``end`` (dates, inclusive)."""
    errors: dict[str, list[dict[str, str]]] = {}
    delegate = delegate.strip()
    try:
        first, last = _date(start, "from"), _date(end, "to")
    except SubmissionError as exc:
        errors.update(exc.errors)
        first = last = None
    now_day = today(engine)
    if first and last:
        if last < first:
            errors["to"] = [msg("结束日期不能早于开始日期", "The end date cannot be before the start date.")]
        elif last < now_day:
            errors["to"] = [msg("结束日期已过", "The end date has passed.")]
        elif last - now_day > LONGEST:
            errors["to"] = [msg("委托最长一年", "A delegation lasts a year at most.")]
    with engine.store.transaction() as tx:
        mine = tx.first(USERS, ("username", user.username))
        other = tx.first(USERS, ("username", delegate)) if delegate else None
        if not delegate or other is None:
            errors["delegate"] = [msg("请选择受托人", "Choose whom to delegate to.")]
        elif delegate == user.username:
            errors["delegate"] = [msg("不能委托给自己", "You cannot delegate to yourself.")]
        elif other.get("active", True) is False:
            errors["delegate"] = [msg("该用户已停用", "This user is deactivated.")]
        elif not set(other.get("roles") or ()) & set(user.roles):
            errors["delegate"] = [msg("受托人须至少具有您的一个角色", "The delegate must hold at least one of your roles.")]
        if mine is None:
            errors["delegate"] = [msg("找不到您的账号", "Your account was not found.")]
        if not errors and first and last and mine is not None:
            for d in mine.get("delegations") or ():
                if not d.get("ended_at") and d["from"] <= last.isoformat() and first.isoformat() <= d["to"]:
                    errors["from"] = [msg(f"与已有委托（{d['from']} 至 {d['to']}）时间重叠",
                                          f"Overlaps your delegation from {d['from']} to {d['to']}.")]
                    break
        if errors:
            raise SubmissionError(errors, values={"delegate": delegate, "from": start, "to": end})
        assert mine is not None and first and last
        items = list(mine.get("delegations") or [])
        entry = {"id": max((d["id"] for d in items), default=0) + 1, "delegate": delegate, "from": first.isoformat(),
                 "to": last.isoformat(), "created_at": iso(engine.clock()), "ended_at": None}
        mine["delegations"] = [*items, entry]
        tx.replace(USERS, mine["id"], mine)
    return entry


def end(engine: "Engine", user: User, delegation_id: int) -> bool:
    """End one of ``user``'s delegations now (False: no such delegation in force)."""
    with engine.store.transaction() as tx:
        mine = tx.first(USERS, ("username", user.username))
        if mine is None:
            return False
        for d in mine.get("delegations") or ():
            if d.get("id") == delegation_id and not d.get("ended_at"):
                d["ended_at"] = iso(engine.clock())
                tx.replace(USERS, mine["id"], mine)
                return True
    return False


def delegators(engine: "Engine", user: User, tx: "Transaction | None" = None) -> list[User]:
    """The active people who delegate to ``user`` today (one index lookup)."""
    if user.delegate is not None or not user.username:
        return []
    day = today(engine)
    found = []
    for doc in (tx or engine.store).lookup("users", [("delegate", user.username)], newest=False).docs:
        if doc.get("active", True) is not False and any(
                d["delegate"] == user.username and active(d, day) for d in doc.get("delegations") or ()):
            found.append(User.from_doc(doc))
    return found


def acting_for(engine: "Engine", case: "Case", user: User, tx: "Transaction | None" = None) -> list[User]:
    """The delegators of ``user`` whose task ``case`` is now (``user`` may act on it for them)."""
    return [d for d in delegators(engine, user, tx) if engine.waits_for(case, d, delegated=False)]


def proxy(delegator: User, delegate: User) -> User:
    """``delegate`` acting as ``delegator``: the delegator's roles and scope, the delegate's name in the history."""
    return replace(delegator, delegate=delegate)


def all_in(engine: "Engine", units: list[str]) -> list[dict[str, Any]]:
    """For the admin: every delegation made by the users of ``units``, newest first."""
    day = today(engine)
    rows = []
    for doc in engine.read.users_in(units, size=None).items:
        for d in doc.get("delegations") or ():
            status = "ended" if d.get("ended_at") else "over" if d["to"] < day.isoformat() else \
                "upcoming" if d["from"] > day.isoformat() else "active"
            rows.append({**d, "status": status, "delegator": doc["username"],
                         "delegator_name": doc.get("name") or doc["username"],
                         "delegate_name": engine.read.display_names([d["delegate"]])[0]})
    return sorted(rows, key=lambda r: r["created_at"], reverse=True)


class DelegationMixin:
    """What a person may see and do, delegation considered (mixed into :class:`engine.runtime.Engine`): the
    transitions they may take, whether a case waits for them, whether they see it, its sensitive values and files."""

    def delegators(self: Any, user: User, tx: "Transaction | None" = None) -> list[User]:
        return delegators(self, user, tx)

    def acting_for(self: Any, case: "Case", user: User, tx: "Transaction | None" = None) -> list[User]:
        return acting_for(self, case, user, tx)

    def can_see(self: Any, case: "Case", user: User) -> bool:
        """Their own roles on the case (``engine.access``: also creator, assignee, cc...), or a delegator's task."""
        return self.access.can_see(case, user) or bool(acting_for(self, case, user))

    def may_see_sensitive(self: Any, case: "Case", user: User) -> bool:
        """``engine.access``'s one rule, for the person or for a delegator whose task the case is (the delegate
        takes the step with the delegator's rights, and the step form must come with what the delegator sees)."""
        if self.access.may_see_sensitive(case, user):
            return True
        return user is not None and any(self.access.may_see_sensitive(case, d) for d in acting_for(self, case, user))

    def may_see_file(self: Any, case: "Case", user: User, key: str) -> bool:
        """An upload of the case, by the same rule (a delegate needs the photos of the task they take over)."""
        if self.access.may_see_file(case, user, key):
            return True
        return any(self.access.may_see_file(case, d, key) for d in acting_for(self, case, user))

    def available_transitions(self: Any, case: "Case", user: User, delegated: bool = True) -> list[Any]:
        """The transitions ``user`` may take now (role check and guard of the one transition path; ``delegated``:
        also those they may take for someone who delegated to them)."""
        return list(self._takeable(case, user, delegated))

    def _takeable(self: Any, case: "Case", user: User, delegated: bool) -> Iterator[Any]:
        """The transitions ``user`` may take now, one by one (whoever needs only the first stops there)."""
        from . import transition as moves  # here: the transition path imports this module
        from .mechanics.base import SYSTEM, Step

        wf = self.workflow_of(case)
        # the roles the check would find (as Transition.check_roles): a transition none of them names is not tried
        people = [user, *(delegators(self, user) if delegated else ())]
        roles = set().union(*(self.roles_for(case, p) for p in people)) | ({"system"} if user is SYSTEM else set())
        for t in self.state_of(case).transitions:
            edge = wf.edge(case.state, t.target, kind="transition", via=t.id)
            if t.roles == ("system",) or edge is None or roles.isdisjoint(t.roles):
                continue
            try:
                moves.check(self, case, edge, user, Step(transition=t), delegated=delegated)
            except TransitionError:
                continue
            yield t

    def waits_for(self: Any, case: "Case", user: User, delegated: bool = True) -> bool:
        """Whether the case is on the user's to-do list: waiting for a role they hold on it and a step they may
        take now, or for their contribution or their approval, or escalated to them; ``delegated``: or on the
        to-do list of someone who delegated their tasks to them."""
        wf = self.spec_of(case)
        if wf is None or case.state not in wf.states or wf.states[case.state].final:
            return False
        roles = self.roles_for(case, user)
        if roles:
            # a step they may take now: the first one found is enough
            waiting = set(case.waiting_for) & roles and next(self._takeable(case, user, False), None) is not None
            if waiting or self.may_contribute(case, user)[0] or self.may_approve(case, user, delegated=False) \
                    or user.username in case.escalated_to:
                return True
        return delegated and bool(acting_for(self, case, user))
