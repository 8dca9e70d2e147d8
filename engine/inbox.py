"""The inbox as a work queue: its two indexes and the query the inbox page asks (filter by process and state,
sort by waiting time or due date, search by number or title, counts per process, pages).

An open case is filed under who it waits for, each entry ``w`` one of ``("r", workflow, role, unit)`` (a role
within reach of the unit), ``("a", workflow, role)`` (a contributor role from anywhere) and ``("u", workflow,
user)`` (its creator, an assignee, a rater picked for it, someone it was escalated to): the same rules as the
``wait*`` keys of :mod:`engine.readmodel`, with the workflow in every entry so a process filter is a lookup.
Under each entry it is found as

``("w", *w)``            the whole inbox (and, per workflow, its count)
``("s", state, *w)``     one state of a workflow
``("q", bigram, *w)``    each pair of adjacent characters of its title (case-folded): a search of two or more
                         characters is the lookup of its first pair, the rest of the query is checked on what
                         that finds

in two indexes of the same keys but different order: :data:`INBOX_WAIT` by the time the case entered its state
(longest waiting first; newest first for "recent"), :data:`INBOX_DUE` by its deadline (soonest first, cases
without one last; it carries no search keys: a search sorted by due date sorts the matches it found).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .cases import CASES, Case, entered_at
from .access import named
from .spec import Definitions, WorkflowSpec, person_roles, role_field
from .store.base import Doc, Index, Key

if TYPE_CHECKING:
    from .readmodel import Paged, ReadModel, Resolve

INBOX_WAIT = "inbox_wait"
INBOX_DUE = "inbox_due"
#: How the inbox can be sorted; the first is the default (a work queue: the oldest first).
SORTS = ("waiting", "due", "recent")
#: The timers that are a deadline for the people the case waits for (not a notice period or a clock's own step).
DEADLINE_KINDS = ("deadline", "collect_deadline")
NUMBER = re.compile(r"^#?\s*(\d{1,12})$")


def fold(text: str) -> str:
    """A title or query as searched: case-folded, without spaces."""
    return "".join(str(text or "").casefold().split())


def bigrams(text: str) -> set[str]:
    folded = fold(text)
    return {folded[i:i + 2] for i in range(len(folded) - 1)}


def due_of(doc: Mapping[str, Any]) -> str:
    """The case's deadline in its current state (ISO time), also once passed; "" when it has none."""
    return min((str(t["due"]) for t in doc.get("timers") or ()
                if t.get("kind") in DEADLINE_KINDS and t.get("state") == doc.get("state") and t.get("due")), default="")


def waits(doc: Doc, wf: WorkflowSpec | None, wid: str) -> list[tuple[Any, ...]]:
    """Who an open case waits for, as inbox entries (none for a final state or an unknown workflow)."""
    state = wf.states.get(doc["state"]) if wf is not None else None
    if state is None or state.final:
        return []
    unit, creator = doc.get("org_unit", ""), doc.get("created_by", "")
    assignees, waiting = doc.get("assignees") or [], doc.get("waiting_for") or []
    found: list[tuple[Any, ...]] = [("r", wid, r, unit) for r in person_roles(waiting)]
    people = list(doc.get("escalated_to") or [])
    named_in = named(wf, doc.get("data"))
    people += [u for r in waiting if (name := role_field(r)) for u in named_in.get(name, ())]
    if "creator" in waiting:
        people.append(creator)
    if "assignee" in waiting:
        people += assignees
    collect = state.collect
    if collect is not None:
        if collect.who == "assignees":
            people += assignees
        elif collect.scope == "any":
            found += [("a", wid, r) for r in collect.roles]
        else:
            found += [("r", wid, r, unit) for r in collect.roles]
    if state.approval is not None:  # the approvers still to act now (sequence: whose turn it is)
        from .mechanics import approval  # here: the mechanics import the read model, which imports this module
        people += approval.pending(approval.current(doc, doc["state"]))
    found += [("u", wid, u) for u in people if u]
    return list(dict.fromkeys(found))


def inbox_keys(definitions: Definitions, resolve: "Resolve", search: bool) -> Callable[[Doc], list[Key]]:
    from .readmodel import tag

    def keys(doc: Doc) -> list[Key]:
        wf = resolve(doc["workflow"], doc.get("workflow_version"))
        entries = waits(doc, wf, tag(definitions, wf) if wf is not None else doc["workflow"])
        found: list[Key] = []
        grams = bigrams(doc.get("title", "")) if search and entries else ()
        for w in entries:
            found += [("w", *w), ("s", doc["state"], *w)]
            found += [("q", g, *w) for g in grams]
        return found
    return keys


def _waiting_order(doc: Doc) -> Any:
    return (entered_at(doc), doc["id"])


def _due_order(doc: Doc) -> Any:
    due = due_of(doc)
    return (0, due, doc["id"]) if due else (1, "", doc["id"])


def indexes(definitions: Definitions, resolve: "Resolve", version: str) -> list[Index]:
    """The inbox's indexes, for :func:`engine.readmodel.install`."""
    return [Index(INBOX_WAIT, CASES, keys=inbox_keys(definitions, resolve, True), order=_waiting_order, version=version),
            Index(INBOX_DUE, CASES, keys=inbox_keys(definitions, resolve, False), order=_due_order, version=version)]


@dataclass(frozen=True)
class InboxQuery:
    """What the person asked the inbox for (``?process=&state=&sort=&q=&page=``), cleaned: an unknown process,
    state or sort is dropped rather than answered with an error."""

    process: str | None = None
    state: str | None = None
    sort: str = SORTS[0]
    q: str = ""
    page: int = 1

    @classmethod
    def from_args(cls, args: Mapping[str, str], read: "ReadModel") -> "InboxQuery":
        process = args.get("process") or None
        wf = read.definitions.workflows.get(process) if process else None
        state = args.get("state") or None
        if wf is None or state not in read.states(wf):
            state = None
        sort = args.get("sort") if args.get("sort") in SORTS else SORTS[0]
        try:
            page = max(1, int(args.get("page") or 1))
        except ValueError:
            page = 1
        return cls(wf.id if wf else None, state, sort, str(args.get("q") or "").strip()[:100], page)


@dataclass
class InboxPage:
    """One page of the inbox: its cases, the counts per process (and per state of the chosen process)."""

    cases: "Paged[Case]"
    counts: dict[str, int] = field(default_factory=dict)
    state_counts: dict[str, int] = field(default_factory=dict)
    #: case id -> the names of those who delegated it to the user (代), for the cases that are not the user's own task
    acting_for: dict[Any, tuple[str, ...]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class Inbox:
    """The inbox queries of one read model (see the module docstring)."""

    def __init__(self, read: "ReadModel"):
        self.read = read
        self.engine = read.engine

    def entries(self, user: Any, workflows: Iterable[WorkflowSpec], people: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Every inbox entry ``user`` answers for, in ``workflows`` (all their kept versions): their own, and
        those of each person who delegated their tasks to them today (``engine.delegation``); ``people``: the
        user and their delegators, if already looked up."""
        workflows = list(workflows)
        found: list[tuple[Any, ...]] = []
        for person in people if people is not None else [user, *self.engine.delegators(user)]:
            found += self._own_entries(person, workflows)
        return list(dict.fromkeys(found))

    def _own_entries(self, user: Any, workflows: list[WorkflowSpec]) -> list[tuple[Any, ...]]:
        from .readmodel import tag

        access, found = self.read.access, []
        for wf in workflows:
            for spec in self.engine.kept.specs(wf.id) or [wf]:
                wid = tag(self.read.definitions, spec)
                found.append(("u", wid, user.username))
                for role in sorted(set(user.roles) & access.acting_roles(spec)):
                    found += [("r", wid, role, unit) for unit in sorted(access.reach_units(user.org_unit, role, wf.id))]
                    found.append(("a", wid, role))
        return found

    def counts(self, user: Any, entries: Mapping[str, list[tuple[Any, ...]]] | None = None) -> dict[str, int]:
        """Cases waiting for ``user`` per workflow (only those with any); ``entries``: the user's entries per
        workflow id, if already worked out."""
        counts = {}
        people = [user, *self.engine.delegators(user)]  # looked up once, not per workflow
        for wf in self.read.definitions.workflows.values():
            mine = entries[wf.id] if entries is not None else self.entries(user, [wf], people)
            n = self.read.store.count_keys(INBOX_WAIT, [("w", *w) for w in mine])
            if n:
                counts[wf.id] = n
        return counts

    def state_counts(self, user: Any, wf: WorkflowSpec) -> dict[str, int]:
        entries = self.entries(user, [wf])
        counts = {sid: self.read.store.count_keys(INBOX_WAIT, [("s", sid, *w) for w in entries])
                  for sid in self.read.states(wf)}
        return {sid: n for sid, n in counts.items() if n}

    def page(self, user: Any, query: InboxQuery, size: int) -> InboxPage:
        """The cases of one inbox page, with the counts the page shows beside them."""
        from .readmodel import Paged

        people = [user, *self.engine.delegators(user)]  # looked up once, not per workflow
        by_workflow = {wf.id: self.entries(user, [wf], people) for wf in self.read.definitions.workflows.values()}
        entries = by_workflow[query.process] if query.process else [e for found in by_workflow.values() for e in found]
        acting: dict[Any, tuple[str, ...]] = {}

        def waiting(case: Case) -> bool:
            """The user's own task, or (once per case) the task of those who delegated to them."""
            if self.engine.waits_for(case, user, delegated=False):
                return True
            names = tuple(d.name for d in people[1:] if self.engine.waits_for(case, d, delegated=False))
            if names:
                acting[case.id] = names
            return bool(names)
        number = NUMBER.match(query.q)
        exact: list[Case] = []
        if number:  # a number finds that case (if it waits for this person and passes the filters), then titles
            exact = self._by_number(int(number.group(1)), user, query, waiting)
        found = self._lookup(entries, query, size, {c.id for c in exact})
        cases = [c for c in found.items if waiting(c)]
        if query.page == 1:
            cases = exact + cases
        paged = Paged(cases, found.total + len(exact), query.page, size)
        wf = self.read.definitions.workflows.get(query.process) if query.process else None
        return InboxPage(paged, self.counts(user, by_workflow), self.state_counts(user, wf) if wf else {}, acting)

    def _by_number(self, case_id: int, user: Any, query: InboxQuery, waiting: Any) -> list[Case]:
        doc = self.read.store.get(CASES, case_id)
        if doc is None:
            return []
        case = Case.from_doc(doc, owned=True)
        if query.process and case.workflow != query.process or query.state and case.state != query.state:
            return []
        return [case] if waiting(case) else []  # waiting for the user (or a delegator): they see it

    def _lookup(self, entries: list[tuple[Any, ...]], query: InboxQuery, size: int, exact: set[Any]) -> "Paged[Case]":
        """The page of cases the index gives (``exact``: the case a number found, shown first on page 1)."""
        from .readmodel import Paged

        store, q = self.read.store, fold(query.q)
        offset = max(0, (query.page - 1) * size - len(exact))
        limit = size - len(exact) if query.page == 1 else size
        newest = query.sort == "recent"
        if not q:
            prefix: tuple[Any, ...] = ("s", query.state) if query.state else ("w",)
            index = INBOX_DUE if query.sort == "due" else INBOX_WAIT
            found = store.lookup(index, [(*prefix, *w) for w in entries], offset=offset, limit=limit,
                                 newest=newest, omit=("history",))
            return Paged([Case.from_doc(d, owned=True) for d in found.docs], found.total, query.page, size)
        state = query.state

        def where(doc: Doc) -> bool:
            return q in fold(doc.get("title", "")) and (state is None or doc["state"] == state) and doc["id"] not in exact
        keys = [("q", q[:2], *w) for w in entries] if len(q) >= 2 else [("w", *w) for w in entries]
        if query.sort == "due":  # the matches (few: narrowed by the title's first pair), sorted by deadline
            docs = store.lookup(INBOX_WAIT, keys, where=where, omit=("history",)).docs
            docs.sort(key=_due_order)
            return Paged([Case.from_doc(d, owned=True) for d in docs[offset:offset + limit]], len(docs), query.page, size)
        found = store.lookup(INBOX_WAIT, keys, offset=offset, limit=limit, newest=newest, where=where, omit=("history",))
        return Paged([Case.from_doc(d, owned=True) for d in found.docs], found.total, query.page, size)
