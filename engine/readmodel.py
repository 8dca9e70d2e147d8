"""The read model: the indexes the engine keeps beside its tables, and the queries pages are answered from.

Every index is kept by the store in the same transaction as the write it follows (``engine.store.base.Index``),
so no page scans every case: the inbox, lists with their state counts, the public page, exports, case
pickers, linked cases, upload ownership, due timers, the dashboard's figures, users, notifications and the
points ledger are all lookups. Keys are tuples; those on cases follow the access rules of ``engine.access``:

``("wf", workflow, state, unit)``      a case, for people whose roles act in the workflow and reach the unit
``("person", workflow, state, user)``  its creator, assignees, the people an overdue case was escalated to,
                                       its approvers (every round's) and the people copied in
``("open", workflow, state)``          a collecting state open to contributors anywhere (``scope: any``)
``("by", user)``                       cases a person started
``("cc", user)``                       cases a person is copied in on (抄送, the inbox's 抄送我的 tab)
``("wait", workflow, role, unit)``     an open case waiting for a role (a transition, an inbox, a contribution)
``("wait_any", workflow, role)``       ... for a contributor role from anywhere
``("wait_user", user)``                ... for one person (creator / assignee steps, assigned raters, escalation,
                                       an approver still to act)
``("public",)``                        listed on the public page (notice or public state)
``("file", key)``, ``("parent", id)``, ``("round", workflow, state, round)``
``("claim", workflow, fields, value…)``  (index ``case_claims``) a case holding the values of a ``unique`` rule in
                                       one of its states (``engine.mechanics.unique``)
``("assigned_open", user)``            an open case assigned to a person (admins find those of deactivated users)
``("wf=", …, field, term)``, ``("person=", …)``, ``("open=", …)``  the first three once more per term of each
                                       list filter field whose type is ``indexed`` (select, multiselect, tick box,
                                       org unit): a filtered list page is one lookup, not a scan of the workflow

The inbox page (filters by process and state, sorts by waiting time and due date, title search, counts per
process) has indexes of its own, ``inbox_wait`` and ``inbox_due``: see :mod:`engine.inbox`.

A case's keys come from the version of its workflow it runs on (``engine.versions``): a case of an old
version waits, is listed and is counted by its own states and roles, under ``workflow@version`` in place of
``workflow`` in the keys above (:func:`tag`), so a count never mixes two versions' roles.
``("version", workflow, version)`` (index ``case_versions``) finds the cases of one version,
``("running", workflow, version)`` those not in a final state of their version.
Users are found under ``("username", u)`` and ``("unit", unit)``, under ``("role", r)`` only while active,
under ``("inactive", unit)`` once deactivated and under ``("delegate", u)`` while they have a delegation to ``u``
not ended (``user_keys``, ``engine.delegation``); the admin's ``audit`` entries under
``("unit", unit)`` for each unit whose people an action touched, newest first.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, Iterator, TypeVar

from . import delegation, inbox
from .mechanics import unique
from .cases import CASES, SCHEMA_VERSION, Case
from . import webhooks
from .ledger import ACCOUNTS, HEADS, LEDGER
from .logins import login_index
from .notify import NOTIFICATIONS
from .access import named
from .spec import Definitions, FieldSpec, StateSpec, WorkflowSpec, person_roles, role_field
from .store.base import Doc, Index, Key, Predicate, Store, Tally
from .tokens import index as tokens_index
from .store.conditions import OneOf
from .users import USERS
from .versions import Versions
from .versions import index as versions_index
from .versions import saves_index

AUDIT = "audit"

if TYPE_CHECKING:
    from .runtime import Engine

Resolve = Callable[[str, Any], "WorkflowSpec | None"]

CASE_INDEX = "cases"
CASE_VERSION_INDEX = "case_versions"
TIMER_INDEX = "case_timers"
FIGURES = "figures"
ROUND_TALLY = "case_rounds"
USER_INDEX = "users"
NOTIFICATION_INDEX = "notifications"
ACCOUNT_INDEX = "points_accounts"
LEDGER_INDEX = "ledger"
HEAD_INDEX = "chain_heads"
ROUND_INDEX = "rounds"
UPLOAD_INDEX = "uploads"
AUDIT_INDEX = "audit"
ROUNDS = "rounds"
UPLOADS = "uploads"

PAGE_SIZE = 20  # cards on a phone, rows of a list: the next page is one tap away
T = TypeVar("T")


@dataclass
class Paged(Generic[T]):
    """One page of results for a template: the items, how many there are in all, and where this page is."""

    items: list[T] = field(default_factory=list)
    total: int = 0
    page: int = 1
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size)) if self.size else 1

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)


def file_keys(value: Any) -> Iterator[str]:
    """Upload keys referenced anywhere in case data (file and photo fields, also inside repeat rows)."""
    if isinstance(value, dict):
        if isinstance(value.get("key"), str) and "content_type" in value:
            yield value["key"]
        for v in value.values():
            if isinstance(v, (dict, list)):
                yield from file_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from file_keys(v)


def _updated(doc: Doc) -> Any:
    return doc.get("updated_at") or ""


def filter_fields(definitions: Definitions, wf: WorkflowSpec) -> list[FieldSpec]:
    """The start-form fields a workflow's list page filters by (``list: {filters: [...]}``)."""
    form = wf.forms.get(wf.start_form) or definitions.forms.get(wf.start_form)
    return [f for f in (form.field(name) for name in wf.listing.filters) if f is not None] if form else []


def current_only(definitions: Definitions) -> Resolve:
    """Every case on the current version of its workflow (no versions kept)."""
    return lambda wid, version: definitions.workflows.get(wid)


def tag(definitions: Definitions, wf: WorkflowSpec) -> str:
    """How cases of version ``wf`` are named in index keys: the workflow id for the current version,
    ``id@version`` for a kept older one."""
    return wf.id if wf is definitions.workflows.get(wf.id) else f"{wf.id}@{wf.version}"


def case_keys(definitions: Definitions, resolve: Resolve | None = None) -> Callable[[Doc], list[Key]]:
    """The index keys of one stored case (see the module docstring); ``resolve(workflow, version)``: the
    version of its workflow a case runs on."""
    from .mechanics import approval  # here: the mechanics modules import this one (through the transition path)

    org = definitions.org
    resolve = resolve or current_only(definitions)
    indexed: dict[tuple[str, int, str], list[FieldSpec]] = {}

    def keys(doc: Doc) -> list[Key]:
        sid, unit, creator = doc["state"], doc.get("org_unit", ""), doc.get("created_by", "")
        wf = resolve(doc["workflow"], doc.get("workflow_version"))
        wid = tag(definitions, wf) if wf is not None else doc["workflow"]
        assignees, escalated = doc.get("assignees") or [], doc.get("escalated_to") or []
        named_in = named(wf, doc.get("data"))  # people a step names through a user field ({field: x})
        copied = doc.get("cc") or []
        people = tuple(dict.fromkeys((creator, *assignees, *escalated, *sorted(approval.everyone(doc)),
                                      *(u for users in named_in.values() for u in users), *copied)))
        found: list[Key] = [("wf", wid, sid, unit), ("by", creator)]
        found += [("cc", u) for u in copied]
        found += [("person", wid, sid, u) for u in people]
        state = wf.states.get(sid) if wf else None
        open_to_all = state is not None and state.collect is not None and state.collect.scope == "any"
        data = doc.get("data") or {}
        if wf is not None and wf.key not in indexed:
            indexed[wf.key] = [f for f in filter_fields(definitions, wf) if f.kind.indexed]
        for f in indexed.get(wf.key, ()) if wf is not None else ():
            for term in f.kind.terms(f, data.get(f.id), org):
                found.append(("wf=", wid, sid, unit, f.id, term))
                found += [("person=", wid, sid, u, f.id, term) for u in people]
                if open_to_all:
                    found.append(("open=", wid, sid, f.id, term))
        if state is None or not state.final:  # a state the current definition lacks still runs (on its version)
            found += [("assigned_open", u) for u in assignees]
        if state is not None and not state.final:
            waiting = doc.get("waiting_for") or []
            found += [("wait", wid, r, unit) for r in person_roles(waiting)]
            found += [("wait_user", u) for r in waiting if (name := role_field(r)) for u in named_in.get(name, ())]
            if "creator" in waiting:
                found.append(("wait_user", creator))
            if "assignee" in waiting:
                found += [("wait_user", u) for u in assignees]
            found += [("wait_user", u) for u in escalated]
            if state.approval is not None:  # only the approvers still to act now (sequence: whose turn it is)
                found += [("wait_user", u) for u in approval.pending(approval.current(doc, sid))]
            collect = state.collect
            if collect is not None:
                if collect.who == "assignees":
                    found += [("wait_user", u) for u in assignees]
                elif collect.scope == "any":
                    found += [("wait_any", wid, r) for r in collect.roles]
                    found.append(("open", wid, sid))
                else:
                    found += [("wait", wid, r, unit) for r in collect.roles]
        if state is not None and (state.notice or state.public):
            found.append(("public",))
        found += [("file", k) for k in file_keys(doc.get("data"))]
        if doc.get("parent"):
            found.append(("parent", doc["parent"]))
        if doc.get("round"):
            found.append(("round", doc["workflow"], sid, doc["round"]))
        return found

    return keys


def user_keys(doc: Doc) -> list[Key]:
    """A user under their username and unit; under their roles only while active (a deactivated person is
    neither assigned nor notified), and under ``("inactive", unit)`` while not (the admin's reassignment list)."""
    unit = doc.get("org_unit", "")
    found: list[Key] = [("username", doc.get("username")), ("unit", unit)]
    if doc.get("active", True) is False:
        found.append(("inactive", unit))
    else:
        found += [("role", r) for r in doc.get("roles") or ()]
    return found + delegation.keys(doc)


def _timer_keys(doc: Doc) -> list[Key]:
    return [("due",)] if any(not t.get("done") for t in doc.get("timers") or ()) else []


def _next_due(doc: Doc) -> Any:
    return min((t["due"] for t in doc.get("timers") or () if not t.get("done")), default="")


def version_keys(resolve: Resolve) -> Callable[[Doc], list[Key]]:
    """``("version", workflow, version)`` for every case, ``("running", …)`` also for one not in a final state."""
    def keys(doc: Doc) -> list[Key]:
        wid, version = doc["workflow"], doc.get("workflow_version")
        wf = resolve(wid, version)
        state = wf.states.get(doc["state"]) if wf else None
        running = state is not None and not state.final
        return [("version", wid, version)] + ([("running", wid, version)] if running else [])
    return keys


def figure_values(definitions: Definitions, context: Callable[[Case], dict[str, Any]],
                  resolve: Resolve | None = None) -> Callable[[Doc], list[Any]]:
    """Each case's contribution to the declared metrics: ``((workflow, metric, month, unit), value)``."""
    resolve = resolve or current_only(definitions)

    def values(doc: Doc) -> list[Any]:
        wf = resolve(doc["workflow"], doc.get("workflow_version"))
        if wf is None or not wf.metrics:
            return []
        # The stored document is only read here (the sandboxed expressions cannot change it), so it is not
        # copied unless an old schema version must be migrated first.
        case = Case.from_doc(doc, owned=doc.get("schema_version") == SCHEMA_VERSION)
        ctx = context(case)
        month = (doc.get("created_at") or "")[:7]
        found = []
        for metric in wf.metrics:
            if metric.where is not None and not metric.where.test(ctx):
                continue
            value = 1 if metric.sum is None else case.data.get(metric.sum)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            found.append(((wf.id, metric.id, month, case.org_unit), value))
        return found
    return values


#: Bump when a key function below changes (also ``FieldType.claim_term``, by which the claims of ``unique`` rules
#: are keyed in ``case_claims``): a file store trusts the index entries it saved only while the name, table and
#: version match.
READMODEL_VERSION = "8"  # 4: the inbox indexes (engine.inbox); 5: approval rounds in the waiting keys;
#                          6: people named in user fields ({field: x} roles); 7: cc, delegates; 8: unique claims


def fingerprint(definitions: Definitions, versions: Versions | None = None) -> str:
    """The version of the indexes whose keys depend on the definitions (roles waiting in each state, collect
    roles, public states, metrics): any change to a workflow, or to the kept versions old cases resolve to,
    gives a new one, so saved entries are rebuilt."""
    text = READMODEL_VERSION + repr(sorted(definitions.workflows.items())) + (versions.fingerprint() if versions else "")
    return f"{READMODEL_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def install(store: Store, definitions: Definitions, context: Callable[[Case], dict[str, Any]],
            versions: Versions | None = None) -> None:
    """Declare every index and tally on ``store`` (each is built from what is stored, then kept up to date)."""
    version = fingerprint(definitions, versions)
    resolve = versions.resolve if versions is not None else current_only(definitions)
    store.add_indexes((
        Index(CASE_INDEX, CASES, keys=case_keys(definitions, resolve), order=_updated, version=version),
        Index(CASE_VERSION_INDEX, CASES, keys=version_keys(resolve), version=version),
        Index(unique.CLAIM_INDEX, CASES, keys=unique.claim_keys(resolve), version=version),
        Index(TIMER_INDEX, CASES, keys=_timer_keys, order=_next_due, version=READMODEL_VERSION),
        Tally(FIGURES, CASES, values=figure_values(definitions, context, resolve), version=version),
        versions_index(),
        saves_index(),
        Tally(ROUND_TALLY, CASES, values=lambda d: [((d["workflow"], d["round"]), 1)] if d.get("round") else []),
        Index(USER_INDEX, USERS, keys=user_keys, version=READMODEL_VERSION),
        Index(AUDIT_INDEX, AUDIT, keys=lambda d: [("unit", u) for u in d.get("units") or ()],
              order=lambda d: (d.get("at") or "", d["id"])),
        Index(NOTIFICATION_INDEX, NOTIFICATIONS, order=lambda d: (d.get("at") or "", d["id"]),
              keys=lambda d: [("to", d["to"])] + ([("unread", d["to"]), ("unread_case", d["to"], d.get("case"))]
                                                  if not d.get("read") else [])),
        Index(ACCOUNT_INDEX, ACCOUNTS, keys=lambda d: [("owner", d["owner"])]),
        Index(LEDGER_INDEX, LEDGER, keys=lambda d: [("account", d["account"])], order=lambda d: d.get("seq", 0)),
        Index(HEAD_INDEX, HEADS, keys=lambda d: [("table", d["table"])]),
        # a reopened round (closed_at cleared) is found under ("reopened", …): it may be closed again
        Index(ROUND_INDEX, ROUNDS, keys=lambda d: [("round" if d.get("closed_at") else "reopened", d["workflow"], d["round"])]),
        Index(UPLOAD_INDEX, UPLOADS, keys=lambda d: [("key", d["key"])]),
        login_index(),
        *webhooks.indexes(),
        tokens_index(),
        *inbox.indexes(definitions, resolve, version),
    ))
    store.save_indexes()


class ReadModel:
    """The queries pages use, answered from the indexes (never by scanning every case)."""

    def __init__(self, engine: "Engine"):
        self.engine = engine
        self.store = engine.store
        self.definitions = engine.definitions
        self.access = engine.access
        self.work = inbox.Inbox(self)  # the inbox page: filters, sorts, search, counts

    # -- keys for one user ---------------------------------------------------------
    def visible_keys(self, user: Any, wf: WorkflowSpec, states: Iterable[str],
                     term: tuple[str, list[str]] | None = None) -> list[Key]:
        """Keys under which every case of ``wf`` in ``states`` that ``user`` may see is found; with ``term``
        ``(field id, terms)``, only those whose field is filed under one of the terms (an indexed filter)."""
        keys: list[Key] = []
        suffixes: list[tuple[str, ...]] = [(term[0], t) for t in term[1]] if term else [()]
        mark = "=" if term else ""
        for n, spec in enumerate(self.engine.kept.specs(wf.id) or [wf]):
            units = self.access.units_for(user, set(user.roles) & self.access.acting_roles(spec), spec)
            wid = tag(self.definitions, spec)
            for sid in (states if n == 0 else [s for s in states if s in spec.states]):
                state = spec.states.get(sid)
                open_to_user = state is not None and state.collect is not None and state.collect.scope == "any" \
                    and bool(set(user.roles) & set(state.collect.roles))
                for sfx in suffixes:
                    keys += [("wf" + mark, wid, sid, unit, *sfx) for unit in units]
                    keys.append(("person" + mark, wid, sid, user.username, *sfx))
                    if open_to_user:
                        keys.append(("open" + mark, wid, sid, *sfx))
        return keys

    def inbox_keys(self, user: Any) -> list[Key]:
        """The keys of the user's to-do list, and of those of the people who delegated their tasks to them."""
        keys: list[Key] = []
        for person in [user, *self.engine.delegators(user)]:
            keys += self._own_inbox_keys(person)
        return list(dict.fromkeys(keys))

    def _own_inbox_keys(self, user: Any) -> list[Key]:
        keys: list[Key] = [("wait_user", user.username)]
        for wf in self.definitions.workflows.values():
            for spec in self.engine.kept.specs(wf.id):
                wid = tag(self.definitions, spec)
                for role in set(user.roles) & self.access.acting_roles(spec):
                    keys += [("wait", wid, role, unit) for unit in self.access.reach_units(user.org_unit, role, wf.id)]
                    keys.append(("wait_any", wid, role))
        return keys

    def states(self, wf: WorkflowSpec) -> list[str]:
        """The states of the current version, then those only older versions have (a case may still be there)."""
        found = dict.fromkeys(wf.states)
        for spec in self.engine.kept.specs(wf.id)[1:]:
            found.update(dict.fromkeys(spec.states))
        return list(found)

    # -- cases -----------------------------------------------------------------------
    def _cases(self, keys: list[Key], page: int, size: int | None, where: Any = None,
               check: Callable[[Case], bool] | None = None, newest: bool = True) -> Paged[Case]:
        """Cases under ``keys``, newest first, as list rows (without their history: ``Case.summary``);
        ``check`` re-applies the exact rule to the rows shown."""
        offset = (page - 1) * size if size else 0
        found = self.store.lookup(CASE_INDEX, keys, offset=offset, limit=size, where=where, newest=newest,
                                  omit=("history",))
        cases = [Case.from_doc(d, owned=True) for d in found.docs]
        if check is not None:
            cases = [c for c in cases if check(c)]
        return Paged(cases, found.total, page, size or max(found.total, 1))

    def inbox(self, user: Any, page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Case]:
        """Open cases waiting for one of the roles the user holds on them (or for their contribution)."""
        return self._cases(self.inbox_keys(user), page, size, check=lambda c: self.engine.waits_for(c, user))

    def copied_to(self, user: Any, page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Case]:
        """The cases a person is copied in on (抄送我的), most recently changed first."""
        return self._cases([("cc", user.username)], page, size, check=lambda c: self.access.can_see(c, user))

    def started_by(self, user: Any, page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Case]:
        """The cases a person started, newest first."""
        return self._cases([("by", user.username)], page, size)

    def listing(self, user: Any, wf: WorkflowSpec, state: str | None = None, where: Any = None,
                page: int = 1, size: int | None = PAGE_SIZE, term: tuple[str, list[str]] | None = None) -> Paged[Case]:
        """A page of the cases of ``wf`` the user may see; ``term`` narrows them by an indexed filter field
        first (see :meth:`visible_keys`), ``where`` by anything else."""
        states = [state] if state else self.states(wf)
        return self._cases(self.visible_keys(user, wf, states, term), page, size, where,
                           check=lambda c: self.access.can_see(c, user))

    def state_counts(self, user: Any, wf: WorkflowSpec) -> dict[str, int]:
        """Cases the user may see per state of the current version, then per state only an older version has
        (where cases still are)."""
        states = self.states(wf)
        found = self.store.count_groups(CASE_INDEX, {sid: self.visible_keys(user, wf, [sid]) for sid in states})
        return {sid: n for sid, n in found.items() if sid in wf.states or n}

    def version_counts(self, workflow_id: str) -> dict[int, int]:
        """Running cases (not in a final state of their version) per version of the workflow."""
        numbers = set(self.engine.kept.kept_numbers(workflow_id))
        wf = self.definitions.workflows.get(workflow_id)
        if wf is not None:
            numbers.add(wf.version)
        return {v: self.store.count_keys(CASE_VERSION_INDEX, [("running", workflow_id, v)]) for v in sorted(numbers)}

    def cases_of_version(self, tx: Any, workflow_id: str, version: int, running: bool = True) -> list[Case]:
        """Every case (``running``: not final) of one version of a workflow, oldest first."""
        key = ("running" if running else "version", workflow_id, version)
        return [Case.from_doc(d, owned=True) for d in (tx or self.store).lookup(CASE_VERSION_INDEX, [key], newest=False).docs]

    def case_choices(self, f: Any, user: Any, limit: int = 200) -> list[Case]:
        """The newest cases a ``type: case`` field may point at, for this user."""
        wf = self.definitions.workflows.get(f.workflow)
        if wf is None:
            return []
        where = OneOf(("state",), tuple(f.states)) if f.states else None
        return self.listing(user, wf, where=where, size=limit).items

    def children(self, case: Case, user: Any) -> list[Case]:
        cases = self._cases([("parent", case.id)], 1, None, check=lambda c: self.access.can_see(c, user)).items
        return sorted(cases, key=lambda c: c.id or 0)  # in the order they were started

    def public(self, page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Case]:
        return self._cases([("public",)], page, size)

    def mentioning(self, key: str) -> list[Case]:
        return self._cases([("file", key)], 1, None).items

    def round_cases(self, tx: Any, wf: WorkflowSpec, state: str, round_id: str) -> list[Case]:
        source = tx or self.store
        return [Case.from_doc(d, owned=True) for d in source.lookup(CASE_INDEX, [("round", wf.id, state, round_id)], newest=False).docs]

    def rounds(self, workflow_id: str) -> list[str]:
        return sorted((r for (wid, r), n in self.store.totals(ROUND_TALLY).items() if wid == workflow_id and n),
                      reverse=True)

    def due_case_ids(self, stamp: str) -> list[int]:
        """Cases with a timer due at ``stamp`` or before, soonest first."""
        ids = []
        for doc in self.store.lookup(TIMER_INDEX, [("due",)], newest=False,
                                     where=lambda d: _next_due(d) <= stamp).docs:
            ids.append(doc["id"])
        return ids

    def figures(self, user: Any, unit: str | None = None, months: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The declared metrics per workflow, month and org unit, over the units the user's acting roles reach
        (and only the ``months`` asked for: a tally holds every month there ever was)."""
        org = self.definitions.org
        reach: dict[str, frozenset[str]] = {}
        inside: dict[str, bool] = {}  # per case unit: inside ``unit`` (the same few units come back per metric and month)
        rows = []
        wanted = set(months) if months is not None else None
        for (wid, metric, month, case_unit), value in self.store.totals(FIGURES).items():
            if wanted is not None and month not in wanted:
                continue
            if wid not in reach:
                wf = self.definitions.workflows.get(wid)
                reach[wid] = frozenset() if wf is None else \
                    self.access.units_for(user, set(user.roles) & self.access.acting_roles(wf), wf)
            if case_unit not in reach[wid]:
                continue
            if unit:
                found = inside.get(case_unit)
                if found is None:
                    found = inside[case_unit] = org.contains(unit, case_unit)
                if not found:
                    continue
            rows.append({"workflow": wid, "metric": metric, "month": month, "unit": case_unit, "value": value})
        return rows

    # -- people, notifications, points ----------------------------------------------
    def user_docs(self, tx: Any = None, role: str | None = None) -> list[Doc]:
        source = tx or self.store
        if role is None:
            return source.search(USERS)
        return source.lookup(USER_INDEX, [("role", role)], newest=False).docs

    def user_doc(self, username: str, tx: Any = None) -> Doc | None:
        return (tx or self.store).first(USER_INDEX, ("username", username))

    def notifications(self, username: str, limit: int | None = 200) -> list[Doc]:
        return self.store.lookup(NOTIFICATION_INDEX, [("to", username)], limit=limit).docs

    def unread(self, username: str, case_id: int | None = None) -> list[Doc]:
        key = ("unread", username) if case_id is None else ("unread_case", username, case_id)
        return self.store.lookup(NOTIFICATION_INDEX, [key]).docs

    def unread_count(self, username: str) -> int:
        return self.store.count_keys(NOTIFICATION_INDEX, [("unread", username)])

    def account(self, username: str) -> Doc | None:
        return self.store.first(ACCOUNT_INDEX, ("owner", username))

    def ledger_of(self, username: str) -> list[Doc]:
        return self.store.lookup(LEDGER_INDEX, [("account", username)]).docs

    def upload(self, key: str) -> Doc | None:
        return self.store.first(UPLOAD_INDEX, ("key", key))

    def round_closed(self, workflow_id: str, round_id: str, tx: Any = None) -> Doc | None:
        return (tx or self.store).first(ROUND_INDEX, ("round", workflow_id, round_id))

    def round_reopened(self, workflow_id: str, round_id: str) -> list[Doc]:
        """The earlier closings of a round that was reopened, oldest first."""
        return self.store.lookup(ROUND_INDEX, [("reopened", workflow_id, round_id)], newest=False).docs

    # -- the admin area ----------------------------------------------------------------
    def users_in(self, units: Iterable[str], match: Predicate | None = None, page: int = 1,
                 size: int | None = PAGE_SIZE) -> Paged[Doc]:
        """Users whose unit is one of ``units`` (in the order they were added), narrowed by ``match``."""
        offset = (page - 1) * size if size else 0
        found = self.store.lookup(USER_INDEX, [("unit", u) for u in units], offset=offset, limit=size,
                                  where=match, newest=False)
        return Paged(found.docs, found.total, page, size or max(found.total, 1))

    def user_count(self, unit: str) -> int:
        return self.store.count_keys(USER_INDEX, [("unit", unit)])

    def display_names(self, usernames: Iterable[str]) -> list[str]:
        """Each person's name (the username when nobody has it any more)."""
        names = []
        for username in usernames:
            doc = self.user_doc(username)
            names.append((doc.get("name") or username) if doc else username)
        return names

    def inactive_users(self, units: Iterable[str]) -> list[Doc]:
        return self.store.lookup(USER_INDEX, [("inactive", u) for u in units], newest=False).docs

    def open_assigned(self, usernames: Iterable[str], page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Case]:
        """Open cases with any of ``usernames`` among their assignees, most recently changed first."""
        return self._cases([("assigned_open", u) for u in usernames], page, size)

    def audit(self, units: Iterable[str], page: int = 1, size: int | None = PAGE_SIZE) -> Paged[Doc]:
        """Admin actions touching users of ``units``, newest first."""
        offset = (page - 1) * size if size else 0
        found = self.store.lookup(AUDIT_INDEX, [("unit", u) for u in units], offset=offset, limit=size)
        return Paged(found.docs, found.total, page, size or max(found.total, 1))
