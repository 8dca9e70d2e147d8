"""抄送 cc: people copied in on a case see it (and are told), without acting on it.

A person acting on a case (someone it waits for, also as a delegate) or the person who started it copies in named
users; a transition may copy people in by itself (``cc: {roles: [...]}``, ``{users: [...]}`` or ``{field: ...}``).
Either way the case keeps the usernames in ``case.cc``: ``engine.access`` gives them the pseudo-role ``cc`` on the
case (they see it, never its sensitive values, and no step names that role, so they cannot act), the read model
files the case under ``("cc", user)`` for the inbox's 抄送我的 tab, and each one is notified. Copying in by hand is a
self-loop of kind ``cc`` through the one transition path (a history entry, a new version, timers untouched).

Who may be copied in: an active user whose unit shares the case's community (or sits above it, e.g. the street),
so a copy never opens a case to another community's people.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from ..cases import CASES
from ..errors import NotAllowed, StaleVersion, SubmissionError, TransitionError
from ..loadkit import msg
from ..notify import notify
from ..spec import EdgeSpec, Text
from ..users import User
from .approval import check_people
from .base import EdgeKind, EngineBase, Step

if TYPE_CHECKING:
    from ..cases import Case
    from ..loader import Loader
    from ..spec import WorkflowSpec
    from ..store.base import Transaction
    from ..yamlsource import PathItem, YamlSource

LABEL: Text = {"zh": "抄送", "en": "Copy in"}
#: how many people one copy may name (a hand-made post cannot name the whole district)
LIMIT = 20


@dataclass(frozen=True)
class CcSpec:
    """Who a transition copies in: named users, every active holder of a role within reach of the case, or the
    users a field of the case names."""

    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    field: str | None = None


# --------------------------------------------------------------------------- load time

def build(ld: "Loader", source: "YamlSource", path: list["PathItem"], raw: dict | None, wf_roles: set[str],
          data_names: set[str] | None) -> CcSpec | None:
    if raw is None:
        return None
    named = [k for k in ("users", "roles", "field") if k in raw]
    if len(named) > 1:
        ld.problems.append(source.problem(path, f"name whom to copy in one way, not {' and '.join(named)}",
                                          "cc: {roles: [...]}, {users: [...]} or {field: ...}"))
    elif not named or not raw[named[0]]:
        ld.problems.append(source.problem(path, "cc names nobody to copy in",
                                          "cc: {roles: [...]}, {users: [...]} or {field: ...}"))
    check_people(ld, source, path, raw, wf_roles, data_names)
    return CcSpec(tuple(raw.get("users") or ()), tuple(raw.get("roles") or ()), raw.get("field"))


def edges(sid: str) -> list[EdgeSpec]:
    """The state's cc move (a self-loop; who may take it is :meth:`Cc.check_roles`'s rule, not a role list)."""
    return [EdgeSpec(sid, sid, "cc", "cc", LABEL, ())]


# --------------------------------------------------------------------------- run time

def eligible(engine: Any, case: "Case", doc: dict[str, Any] | None) -> bool:
    """Whether the user ``doc`` may be copied in on ``case``: active, and in the case's community or above it."""
    if doc is None or doc.get("active", True) is False:
        return False
    org = engine.definitions.org
    unit = doc.get("org_unit", "")
    home = org.ancestor_at(case.org_unit, "community") or case.org_unit
    return org.contains(unit, case.org_unit) or org.contains(home, unit)


def resolve(engine: Any, tx: "Transaction", case: "Case", spec: CcSpec, wf: "WorkflowSpec") -> list[str]:
    """The people a transition's ``cc:`` names, now: active, eligible, not the case's own starter."""
    named: list[str] = list(spec.users)
    for role in spec.roles:
        named += sorted(u.username for u in engine.users(tx, role) if engine.reaches(u, role, case.org_unit, wf))
    if spec.field:
        value = case.data.get(spec.field)
        named += [value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)]
    return [u for u in dict.fromkeys(named)
            if u != case.created_by and u not in case.cc and eligible(engine, case, engine.read.user_doc(u, tx))]


def add(engine: Any, tx: "Transaction", case: "Case", usernames: Iterable[str], actor: User, now: dt.datetime) -> list[str]:
    """Copy ``usernames`` in (already checked) and tell them; returns their names for the history entry."""
    new = [u for u in usernames if u not in case.cc]
    case.cc = [*case.cc, *new]
    notify(tx, new, "cc", case, LABEL, now, skip=actor.username)
    return engine.read.display_names(new)


def may_copy_in(engine: Any, case: "Case", actor: User) -> bool:
    """The rule of the cc move: the person who started the case, or someone it waits for now."""
    return case.created_by == actor.username or engine.waits_for(case, actor, delegated=False)


class Cc(EdgeKind):
    """A ``cc`` edge: copy named people in on the case."""

    def check_roles(self, engine: Any, case: "Case", edge: EdgeSpec, actor: User, step: Step) -> None:
        if not may_copy_in(engine, case, actor):
            raise NotAllowed(msg("只有发起人或当前办理人可以抄送。",
                                 "Only the person who started the case or someone acting on it now may copy people in."))

    def validate(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: User, step: Step) -> None:
        chosen = list(dict.fromkeys(u for u in step.chosen if u))[:LIMIT]
        bad = [u for u in chosen if u == case.created_by or not eligible(engine, case, engine.read.user_doc(u, tx))]
        if not chosen:
            raise SubmissionError({"cc": [msg("请选择要抄送的人", "Choose whom to copy in.")]})
        if bad:
            raise SubmissionError({"cc": [msg(f"不能抄送给：{'、'.join(bad)}（须为本社区或上级的在岗人员）",
                                              f"Cannot copy in: {', '.join(bad)} (active people of this community "
                                              "or above only).")]})
        new = [u for u in chosen if u not in case.cc]
        if not new:
            raise SubmissionError({"cc": [msg("所选人员已在抄送名单中", "They are copied in already.")]})
        step.chosen = new

    def apply(self, engine: Any, tx: "Transaction", case: "Case", edge: EdgeSpec, actor: User, step: Step,
              now: dt.datetime) -> list[dict[str, Any]]:
        step.record["cc"] = add(engine, tx, case, step.chosen, actor, now)
        return []

    def label(self, edge: EdgeSpec, step: Step) -> Text:
        names = step.record.get("cc") or []
        return {"zh": f"抄送：{'、'.join(names)}", "en": f"Copied in: {', '.join(names)}"}

    def reenters(self, edge: EdgeSpec) -> bool:
        return False  # a copy changes nobody's task: timers and rounds go on


CC = Cc()


class CcMixin(EngineBase):
    """Copying people in (mixed into :class:`engine.runtime.Engine`)."""

    def copy_in(self, case_id: int, user: User, usernames: Iterable[str], comment: str = "",
                expected_version: int | None = None) -> "Case":
        from .. import transition as moves  # here: the transition path imports this module

        with self.store.transaction() as tx:
            case = self._load(tx, case_id, user)
            if expected_version is not None and expected_version != case.version:
                raise StaleVersion()
            edge = self.workflow_of(case).edge(case.state, case.state, kind="cc", via="cc")
            if edge is None:
                raise TransitionError(msg("此事项当前不能抄送。", "This case cannot be copied to anyone now."))
            moves.take(self, tx, case, edge, user, Step(comment=comment or "", chosen=list(usernames)))
            tx.replace(CASES, case_id, case.to_doc())
        return case

    def may_copy_in(self, case: "Case", user: User) -> bool:
        """Whether ``user`` may copy people in on the case now (also on behalf of someone who delegated to them)."""
        from .. import transition as moves

        edge = self.workflow_of(case).edge(case.state, case.state, kind="cc", via="cc")
        if edge is None:
            return False
        try:
            moves.check(self, case, edge, user, Step())
        except TransitionError:
            return False
        return True

    def cc_candidates(self, case: "Case", query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Active people who may be copied in on the case whose name or username holds ``query``
        (the users of the case's community and the units above it, from the users index)."""
        q = "".join(query.split()).casefold()
        if not q:
            return []
        org = self.definitions.org
        home = org.ancestor_at(case.org_unit, "community") or case.org_unit
        units = [*org.below(home), *(u for u in org.ancestors(home) if u != home)]
        found = self.read.users_in(units, size=None).items
        return [{"username": d["username"], "name": d.get("name") or d["username"], "org_unit": d.get("org_unit", "")}
                for d in found if d["username"] != case.created_by and d["username"] not in case.cc
                and eligible(self, case, d) and (q in d["username"].casefold() or q in (d.get("name") or "").casefold())
                ][:limit]
