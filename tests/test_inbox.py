"""The inbox work queue (engine.inbox): for every demo user, every process and state filter, every sort and
searches taken from the titles, the indexed page is exactly what a scan of every case finds, page by page."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.cases import Case, entered_at
from engine.inbox import InboxQuery, due_of, fold, waits
from engine.runtime import Engine
from engine.store import MemoryStore, TinyDBStore

from .test_readmodel import all_cases, demo_engine, everyone


@pytest.fixture(scope="module")
def demo() -> Engine:
    return demo_engine(MemoryStore())


def expected(engine: Engine, cases: list[Case], user, query: InboxQuery, filed: bool = False) -> list[int]:
    """The rule applied case by case: waiting for the user, the filters, the search, the sort. ``filed``: the
    cases the index files under the user's entries instead (what totals and counts count: also a case the user
    must recuse from, which ``waits_for`` then leaves off the page)."""
    entries = set(engine.read.work.entries(user, engine.definitions.workflows.values()))
    found = [c for c in cases if (set(waits(c.to_doc(), engine.workflow_of(c), c.workflow)) & entries if filed
                                  else engine.waits_for(c, user))
             and (query.process is None or c.workflow == query.process)
             and (query.state is None or c.state == query.state)]
    exact: list[Case] = []
    if query.q:
        if query.q.lstrip("#").isdigit():
            exact = [c for c in found if c.id == int(query.q.lstrip("#")) and engine.waits_for(c, user)]
        found = [c for c in found if fold(query.q) in fold(c.title) and c not in exact]
    if query.sort == "due":
        found.sort(key=lambda c: (0, due_of(c.to_doc()), c.id) if due_of(c.to_doc()) else (1, "", c.id))
    else:
        found.sort(key=lambda c: (entered_at(c.to_doc()), c.id), reverse=query.sort == "recent")
    return [c.id for c in exact + found]


def walk(engine: Engine, user, query: InboxQuery, size: int) -> tuple[list[int], int]:
    """Every page of the inbox for ``query`` in turn: the case numbers and the total the first page gave."""
    ids: list[int] = []
    first = engine.read.work.page(user, query, size)
    for n in range(1, first.cases.pages + 1):
        page = engine.read.work.page(user, InboxQuery(query.process, query.state, query.sort, query.q, n), size)
        assert len(page.cases) <= size
        ids += [c.id for c in page.cases]
    return ids, first.cases.total


def test_every_filter_and_sort_of_every_demo_users_inbox_is_what_a_scan_finds(demo: Engine):
    cases = [Case.from_doc(c.to_doc()) for c in all_cases(demo)]
    tried = with_cases = 0
    for user in everyone(demo):
        mine = [c for c in cases if demo.waits_for(c, user)]
        queries = [InboxQuery(sort=s) for s in ("waiting", "due", "recent")]
        for wid in sorted({c.workflow for c in mine}):
            queries.append(InboxQuery(process=wid, sort="due"))
            queries += [InboxQuery(process=wid, state=s) for s in sorted({c.state for c in mine if c.workflow == wid})]
        for c in mine[:3]:  # searches: a piece of a title, a single character, the number
            queries += [InboxQuery(q=c.title[1:3] or c.title), InboxQuery(q=c.title[:1], sort="recent"),
                        InboxQuery(q=f"#{c.id}"), InboxQuery(q=c.title[:2].upper(), sort="due", process=c.workflow)]
        for query in queries:
            want = expected(demo, cases, user, query)
            got, total = walk(demo, user, query, size=4)
            assert got == want, (user.username, query)
            assert total == len(expected(demo, cases, user, query, filed=True)) >= len(want), (user.username, query)
            tried += 1
            with_cases += bool(want)
        page = demo.read.work.page(user, InboxQuery(), 4)
        per_process: dict[str, int] = {}
        filed = [c for c in cases if c.id in expected(demo, cases, user, InboxQuery(), filed=True)]
        for c in filed:
            per_process[c.workflow] = per_process.get(c.workflow, 0) + 1
        assert page.counts == per_process, user.username
        for wid in per_process:
            states = demo.read.work.page(user, InboxQuery(process=wid), 4).state_counts
            assert states == {s: n for s in demo.read.states(demo.definitions.workflows[wid])
                              if (n := sum(1 for c in filed if c.workflow == wid and c.state == s))}
    assert tried > 200 and with_cases > 150  # not a comparison of empty lists


def test_an_unknown_filter_is_dropped_not_an_error(demo: Engine):
    q = InboxQuery.from_args({"process": "nope", "state": "x", "sort": "drop table", "page": "-3", "q": " a "}, demo.read)
    assert q == InboxQuery(None, None, "waiting", "a", 1)
    q = InboxQuery.from_args({"process": "volunteer_registration", "state": "in_pool"}, demo.read)
    assert q.process == "volunteer_registration" and q.state is None  # a state of another process
    q = InboxQuery.from_args({"process": "volunteer_registration", "state": "submitted", "sort": "due", "page": "2"},
                             demo.read)
    assert q == InboxQuery("volunteer_registration", "submitted", "due", "", 2)


def test_a_search_is_a_lookup_of_the_titles_first_pair_not_a_scan(demo: Engine):
    """The store is asked only for the cases filed under the query's first two characters: ``where`` sees
    those, never every case of the inbox."""
    user = next(u for u in everyone(demo) if u.username == "staff")
    mine = [c for c in all_cases(demo) if demo.waits_for(c, user)]
    target = next(c for c in mine if len(fold(c.title)) >= 3)
    seen: list[int] = []
    store = demo.store
    original = store.lookup

    def counting(index, keys, **kw):
        where = kw.get("where")
        if where is not None:
            kw["where"] = lambda d: seen.append(d["id"]) or where(d)
        return original(index, keys, **kw)
    store.lookup = counting  # type: ignore[method-assign]
    try:
        page = demo.read.work.page(user, InboxQuery(q=fold(target.title)), 20)
    finally:
        del store.lookup
    assert target.id in [c.id for c in page.cases]
    pair = fold(target.title)[:2]
    assert set(seen) == {c.id for c in mine if pair in fold(c.title)}
    assert len(seen) < len(mine)


@pytest.mark.parametrize("kind", ["tinydb", "postgres"])
def test_a_reopened_or_shared_store_answers_the_inbox_the_same(kind: str, tmp_path: Path, request, demo: Engine):
    """The same demo on a TinyDB file (reopened, its saved index entries reused) and on PostgreSQL."""
    from tests.conftest import store_location
    from engine.store import open_store

    location = store_location(kind, request, tmp_path, "inbox.json")
    store = TinyDBStore(location) if kind == "tinydb" else open_store(location)
    engine = demo_engine(store)
    if kind == "tinydb":
        store.close()
        store = TinyDBStore(location)
        engine = Engine(demo.definitions, store)
    try:
        cases = all_cases(engine)
        for user in everyone(engine):
            for query in (InboxQuery(), InboxQuery(sort="due"), InboxQuery(q="志愿"),
                          InboxQuery(process="volunteer_registration", state="submitted")):
                got, _total = walk(engine, user, query, size=7)
                assert got == expected(engine, cases, user, query), (kind, user.username, query)
    finally:
        store.close()
