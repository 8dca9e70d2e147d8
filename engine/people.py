"""Who a ``type: user`` field may name, and the check of what was typed into one.

A user field names active users holding one of its ``roles`` (any role when it lists none) whose unit is within
its ``scope`` seen from the case's unit (``engine.fieldtypes.USER_SCOPES``). The form's picker, the search
endpoint and the server-side check all ask :func:`candidates`, so the list a person picks from and what the
server accepts never disagree. Typed text may be a username, ``姓名 (username)`` as the picker fills it in, or a
display name that exactly one candidate has.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .loadkit import msg
from .mechanics.base import EngineBase
from .spec import tr
from .users import User

if TYPE_CHECKING:
    from .cases import Case
    from .spec import FieldSpec, FormSpec, OrgTree, WorkflowSpec
    from .store.base import Transaction

#: at most this many people are listed by a picker or returned by one search
SEARCH_LIMIT = 20
#: a plain <select> up to this many candidates (without JavaScript too); above it a text box with search
SELECT_LIMIT = 30


def scope_top(org: "OrgTree", f: "FieldSpec", unit: str) -> str | None:
    """The unit whose subtree holds the people ``f`` may name for a case of ``unit`` (None: everyone)."""
    scope = f.scope or "community"
    if scope == "all":
        return None
    if scope == "unit":
        return unit
    return org.ancestor_at(unit, scope) or unit


def candidates(read: Any, org: "OrgTree", f: "FieldSpec", unit: str, tx: "Transaction | None" = None) -> list[User]:
    """Every active user ``f`` may name for a case of ``unit``, by name (the read model's user index)."""
    top = scope_top(org, f, unit)
    docs = ([d for role in f.roles for d in read.user_docs(tx, role)] if f.roles
            else [d for d in read.user_docs(tx) if d.get("active", True) is not False])
    seen: dict[str, User] = {}
    for doc in docs:
        user = User.from_doc(doc)
        if user.username in seen or not user.active:
            continue
        if top is None or org.contains(top, user.org_unit):
            seen[user.username] = user
    return sorted(seen.values(), key=lambda u: (u.name, u.username))


def search(people: Iterable[User], query: str, limit: int = SEARCH_LIMIT) -> list[User]:
    """The people whose name or username contains ``query`` (case-folded), those whose name starts with it first."""
    needle = "".join(query.casefold().split())
    found = [u for u in people if needle in u.name.casefold() or needle in u.username.casefold()]
    found.sort(key=lambda u: (not u.name.casefold().startswith(needle), u.name, u.username))
    return found[:limit]


def public(user: User, org: "OrgTree", lang: str = "zh") -> dict[str, str]:
    """What a picker shows of a person: username, name and unit (with the unit above it, short enough for a
    phone: 徽州人家社区 / 第二网格), never a phone or ID number."""
    unit = org.units.get(user.org_unit)
    if unit is None:
        return {"username": user.username, "name": user.name, "unit": user.org_unit}
    parent = org.units.get(unit.parent) if unit.parent else None
    names = ([tr(parent.name, lang)] if parent is not None else []) + [tr(unit.name, lang)]
    return {"username": user.username, "name": user.name, "unit": " / ".join(names)}


def resolve(kind: Any, value: Any, allowed: Mapping[str, User]) -> tuple[list[str], list[str]]:
    """``(usernames, what was not found)`` for the typed value: a username, or a name one candidate has."""
    by_name: dict[str, list[str]] = {}
    for user in allowed.values():
        by_name.setdefault(user.name, []).append(user.username)
    found, unknown = [], []
    for item in kind.usernames(value):
        if item in allowed:
            found.append(item)
        elif len(by_name.get(item, ())) == 1:
            found.append(by_name[item][0])
        else:
            unknown.append(item)
    return list(dict.fromkeys(found)), unknown


def check(read: Any, org: "OrgTree", form: "FormSpec", data: dict[str, Any], unit: str,
          tx: "Transaction | None" = None) -> dict[str, list[dict[str, str]]]:
    """Replace names typed into the form's user fields by usernames in ``data``; errors for anyone who is not a
    candidate (unknown, deactivated, without the role, out of scope)."""
    errors: dict[str, list[dict[str, str]]] = {}
    for f in form.fields:
        if not f.kind.holds_user or f.id not in data:
            continue
        allowed = {u.username: u for u in candidates(read, org, f, unit, tx)}
        found, unknown = resolve(f.kind, data[f.id], allowed)
        if unknown:
            who = "、".join(unknown)
            errors[f.id] = [msg(f"“{who}”不在可选人员中（须为在职、具有相应角色且在本单位范围内的用户）",
                                f"'{', '.join(unknown)}' cannot be chosen here: pick an active person with the role, "
                                "within the unit's reach.")]
        elif f.multiple:
            data[f.id] = found
        else:
            data[f.id] = found[0]
    return errors


class Names:
    """``people(username)`` for showing user fields: each person's display name, looked up once (through the read
    model's user index) and remembered for the life of this object (one page, one export)."""

    def __init__(self, read: Any, tx: "Transaction | None" = None):
        self.read = read
        self.tx = tx
        self.known: dict[str, str | None] = {}

    def __call__(self, username: str) -> str | None:
        if username not in self.known:
            doc = self.read.user_doc(username, self.tx)
            self.known[username] = (doc.get("name") or username) if doc else None
        return self.known[username]



class PeopleMixin(EngineBase):
    """The Engine's queries about people fields (mixed into :class:`engine.runtime.Engine`)."""

    def people(self, tx: "Transaction | None" = None) -> Names:
        """``names(username)``: display names for showing user fields (looked up once each)."""
        return Names(self.read, tx)

    def base_unit(self, user: User, case: "Case | None" = None, wf: "WorkflowSpec | None" = None,
                  values: Mapping[str, Any] | None = None) -> str:
        """The unit a user field's scope is seen from: the case's; before the start, the start form's unit field
        (``values``), else the actor's unit."""
        if case is not None:
            return case.org_unit
        chosen = (values or {}).get(wf.org_unit_field) if wf is not None and wf.org_unit_field else None
        return chosen if isinstance(chosen, str) and chosen in self.definitions.org.units else user.org_unit

    def user_choices(self, f: "FieldSpec", unit: str, tx: "Transaction | None" = None) -> list[User]:
        """Everyone a ``type: user`` field may name for a case of ``unit``."""
        return candidates(self.read, self.definitions.org, f, unit, tx)

    def people_errors(self, form: "FormSpec", data: dict[str, Any], user: User | None, tx: "Transaction | None",
                      case: "Case | None", unit_field: str | None) -> dict[str, list[dict[str, str]]]:
        """:func:`check` for a form filled in by ``user``: on ``case`` (a step's form) or, at the start, for the unit
        the start form's ``unit_field`` names (else the user's)."""
        if not any(f.kind.holds_user for f in form.fields):
            return {}
        unit = case.org_unit if case is not None else (
            (data.get(unit_field) if unit_field else None) or (user.org_unit if user is not None else ""))
        return check(self.read, self.definitions.org, form, data, unit, tx)
